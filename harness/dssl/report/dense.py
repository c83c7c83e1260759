"""Dense pictures of a logged run: its backbone rebuilt from the checkpoint, PCA maps, segmentations.

Every backbone of a report is shown on the same validation images. PCA maps take the first three
principal components of that backbone's patch features over the shown images (fit jointly, so colours are
comparable across the images of one row, not across rows). Segmentations are those of the two standard
protocols, refit here on a small budget: a linear probe on the evaluation train split
(:class:`~dssl.evaluators.linear_seg.LinearSegEvaluator`'s head and optimiser) and k-means with K = number of
classes on the validation features, matched to the classes by the Hungarian algorithm.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Subset

from dssl.host import PluginHost


@dataclass
class RunBackbone:
    """A logged run's evaluated backbone and its evaluation data."""

    label: str
    backbone: torch.nn.Module
    eval_train: Any
    eval_val: Any


def load_run_backbone(client: Any, run: Any, host: PluginHost, label: str) -> RunBackbone:
    """Rebuild the backbone of ``run`` from its ``config.yaml`` and ``checkpoints/backbone.pt`` artifacts.

    Raises:
        FileNotFoundError: The run has no logged backbone checkpoint.
    """
    import yaml

    from dssl.backbones.checkpoint import load_init
    from dssl.config import RunConfig
    from dssl.runner import build_backbone, build_eval_datasets

    with tempfile.TemporaryDirectory(prefix="dssl-report-") as tmp:
        try:
            config_path = client.download_artifacts(run.info.run_id, "config.yaml", tmp)
            checkpoint = client.download_artifacts(run.info.run_id, "checkpoints/backbone.pt", tmp)
        except Exception as exc:  # MLflow raises different types per store for a missing artifact
            raise FileNotFoundError(f"run {run.info.run_id} has no config.yaml or checkpoints/backbone.pt") from exc
        config = RunConfig.model_validate(yaml.safe_load(Path(config_path).read_text()))
        backbone = build_backbone(config, host)
        load_init(backbone, checkpoint)
    eval_train, eval_val = build_eval_datasets(config, host)
    return RunBackbone(label, backbone.eval(), eval_train, eval_val)


def images_and_masks(dataset: Any, indices: list[int]) -> tuple[Tensor, Tensor]:
    """Images ``(B, 3, H, W)`` in [0, 1] and masks ``(B, H, W)`` of ``dataset`` items ``indices``."""
    items = [dataset[i] for i in indices]
    return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items])


@torch.inference_mode()
def dense_features(backbone: torch.nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """Frozen ``(B, h, w, D)`` features of ``images`` ``(B, 3, H, W)`` in [0, 1] (normalised as in training)."""
    from dssl.data.normalize import normalize

    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    return torch.cat([backbone.features(normalize(chunk)).float() for chunk in chunks])


def pca_rgb(features: Tensor, size: tuple[int, int]) -> list[np.ndarray]:
    """First three principal components of ``features`` ``(B, h, w, D)`` as RGB images ``(H, W, 3)`` in [0, 1].

    The components are fit on all patches of all images together; each channel is min-max scaled over them.
    """
    b, h, w, d = features.shape
    flat = features.reshape(-1, d).double()
    flat = flat - flat.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    comps = flat @ v[: min(3, v.shape[0])].T
    if comps.shape[1] < 3:
        comps = torch.cat([comps, comps.new_zeros(comps.shape[0], 3 - comps.shape[1])], dim=1)
    lo, hi = comps.min(0).values, comps.max(0).values
    comps = (comps - lo) / (hi - lo).clamp_min(1e-12)
    maps = comps.reshape(b, h, w, 3).permute(0, 3, 1, 2).float()
    maps = F.interpolate(maps, size=size, mode="nearest")
    return [m.permute(1, 2, 0).numpy() for m in maps]


def linear_probe_predictions(run: RunBackbone, images: Tensor, num_train: int, epochs: int) -> Tensor:
    """Class ids ``(B, H, W)`` of a linear probe fit on ``num_train`` evaluation train images."""
    from dssl.evaluators.extraction import dataset_info, extract_dense
    from dssl.evaluators.linear_seg import LinearSegEvaluator
    from dssl.evaluators.linear_seg_config import LinearSegOptions

    train = Subset(run.eval_train, range(min(num_train, len(run.eval_train))))
    info = dataset_info(run.eval_train, "train")
    train.num_classes, train.ignore_index = info.num_classes, info.ignore_index  # type: ignore[attr-defined]
    evaluator = LinearSegEvaluator(LinearSegOptions(epochs=epochs))
    cache = extract_dense(
        _frozen(run.backbone),
        train,
        info=info,
        stage="report",
        input_size=None,
        mask_size=None,
        batch_size=32,
        num_workers=0,
        device="cpu",
        dtype=torch.float32,
        progress=None,
    )
    head, _ = evaluator._train(cache, info.num_classes, info.ignore_index, "cpu", None)
    with torch.inference_mode():
        feats = dense_features(run.backbone, images).permute(0, 3, 1, 2)
        logits = F.interpolate(head(feats), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1)


def kmeans_predictions(
    features: Tensor, masks: Tensor, num_classes: int, ignore_index: int | None, seed: int = 0
) -> Tensor:
    """Class ids ``(B, H, W)``: k-means (K = ``num_classes``) clusters of ``features`` matched by Hungarian."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    b, h, w, d = features.shape
    points = F.normalize(features.reshape(-1, d), dim=1).numpy()
    k = min(num_classes, len(points))
    clusters = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(points).reshape(b, 1, h, w)
    up = F.interpolate(torch.from_numpy(clusters).float(), size=masks.shape[-2:], mode="nearest").long()[:, 0]
    valid = masks != ignore_index if ignore_index is not None else torch.ones_like(masks, dtype=torch.bool)
    confusion = np.zeros((k, num_classes), dtype=np.int64)
    np.add.at(confusion, (up[valid].numpy(), masks[valid].long().numpy()), 1)
    rows, cols = linear_sum_assignment(-confusion)
    mapping = np.full(k, 0, dtype=np.int64)
    mapping[rows] = cols
    return torch.from_numpy(mapping)[up]


def colorize(mask: Tensor, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """A class-id map ``(H, W)`` as an RGB image with a fixed palette (ignored pixels black)."""
    import matplotlib

    palette = np.asarray(matplotlib.colormaps["tab20"](np.arange(max(num_classes, 1)) % 20))[:, :3]
    ids = mask.long().numpy()
    out = np.zeros((*ids.shape, 3))
    known = (ids >= 0) & (ids < num_classes)
    if ignore_index is not None:
        known &= ids != ignore_index
    out[known] = palette[ids[known]]
    return out


def _frozen(backbone: torch.nn.Module) -> Any:
    """The feature function :func:`~dssl.evaluators.extraction.extract_dense` calls on normalised images."""

    def call(images: Tensor) -> Tensor:
        with torch.inference_mode():
            return backbone.features(images).float()

    return call


__all__ = [
    "RunBackbone",
    "colorize",
    "dense_features",
    "images_and_masks",
    "kmeans_predictions",
    "linear_probe_predictions",
    "load_run_backbone",
    "pca_rgb",
]
