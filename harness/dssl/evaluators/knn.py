"""Weighted k-NN classification of frozen image features (protocol ``knn``, version 1).

After ``facebookresearch/dino`` ``eval_knn.py`` (methods §6.6): train and val image features are
L2-normalised; for each val image the ``k`` most cosine-similar training images vote for their label
with weight ``exp(sim / T)``; the prediction is the class with the largest summed weight. One top-1
accuracy is reported per ``k`` (the neighbours of the largest k are retrieved once and sliced).

Memory: the search runs in blocks of ``chunk_size`` val images, so peak extra memory is about
``chunk_size * N_train * 4`` bytes (similarities) + ``chunk_size * k_max * C * 4`` bytes (votes).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dssl.evaluators.base import EvaluationInputs, ImageEvaluator, Measurement
from dssl.evaluators.knn_config import KNNOptions
from dssl.results import MetricValue


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    query: Tensor,
    *,
    ks: list[int],
    temperature: float,
    num_classes: int,
    chunk_size: int = 256,
) -> dict[int, Tensor]:
    """Weighted k-NN predictions for every ``k`` in ``ks``.

    Args:
        train_features: ``(N, D)`` L2-normalised training features.
        train_labels: ``(N,)`` int64 labels.
        query: ``(M, D)`` L2-normalised query features.
        ks: Neighbour counts, each ``<= N``.
        temperature: Softmax-free vote temperature ``T`` (weights ``exp(sim / T)``).
        num_classes: ``C``.
        chunk_size: Queries per similarity block.

    Returns:
        ``{k: (M,) int64 predictions}``.
    """
    k_max = max(ks)
    preds: dict[int, list[Tensor]] = {k: [] for k in ks}
    for start in range(0, query.shape[0], chunk_size):
        sim = query[start : start + chunk_size] @ train_features.T  # (m, N)
        top_sim, top_idx = sim.topk(k_max, dim=1)  # sorted, most similar first
        weights = (top_sim / temperature).exp()
        one_hot = F.one_hot(train_labels[top_idx], num_classes).to(weights.dtype)  # (m, k_max, C)
        for k in ks:
            votes = (one_hot[:, :k] * weights[:, :k, None]).sum(dim=1)
            preds[k].append(votes.argmax(dim=1))
    return {k: torch.cat(v) for k, v in preds.items()}


class KNNEvaluator(ImageEvaluator[KNNOptions]):
    """Weighted k-NN top-1 accuracy of frozen image features.

    Example:
        >>> ev = KNNEvaluator(KNNOptions(ks=[20]))  # doctest: +SKIP
        >>> result = ev.evaluate(features=image_fn, train=tr, val=va, dataset_name="embedded")  # doctest: +SKIP
        >>> result.metrics["top1_k20"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "knn"
    protocol: ClassVar[str] = "knn"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[KNNOptions]] = KNNOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Extract image features of both splits, classify ``val`` by its neighbours in ``train``.

        Returns:
            ``top1_k<k>`` accuracies in percent for every requested ``k``.
        """
        opts = self.options
        device = inputs.device
        num_classes, (train_x, train_y), (val_x, val_y) = self.extract_splits(inputs)
        train_x = F.normalize(train_x.to(device), dim=1)
        val_x = F.normalize(val_x.to(device), dim=1)
        effective = {k: min(k, train_x.shape[0]) for k in opts.ks}
        preds = knn_predict(
            train_x,
            train_y.to(device),
            val_x,
            ks=sorted(set(effective.values())),
            temperature=opts.temperature,
            num_classes=num_classes,
            chunk_size=opts.chunk_size,
        )
        metrics = {
            f"top1_k{k}": MetricValue(value=100.0 * float((preds[effective[k]].cpu() == val_y).float().mean()))
            for k in opts.ks
        }
        settings = {
            "ks": list(opts.ks),
            "effective_ks": [effective[k] for k in opts.ks],
            "temperature": opts.temperature,
            "weighting": "exp(cos/T)",
            "normalize": "l2",
            "num_classes": num_classes,
            "input_size": self.input_size_setting(),
            "feature_dim": int(train_x.shape[1]),
            "train_images": int(train_x.shape[0]),
            "val_images": int(val_x.shape[0]),
            "label": "dataset 'label' key",
        }
        return metrics, settings
