"""Overclustering: k-means with K > #classes, many-to-one matched (protocol ``overcluster``, version 2).

The pipeline of :mod:`dssl.evaluators.kmeans_seg` (val features extracted once; optional z-score and
PCA; per seed, k-means fitted on at most ``256 * K`` sampled patches, every patch assigned) run for each
``K`` in ``ks``; the nearest-upsampled cluster maps are streamed into a ``(C, K)`` confusion matrix,
each cluster is mapped to the class maximising its precision (NeCo/Leopart ``many_to_one=True,
precision_based=True``), and mIoU is computed on the remapped map. Mean ± std over seeds per K.

Many-to-one matching only means something with more clusters than classes: a ``K <= C`` (e.g. K = 100
on ADE20K's 151 classes) is scored with Hungarian matching instead, as NeCo does for K = C, and the
rule used for each K is recorded (``matching_per_k``). ``overcluster@1`` scored every K many-to-one.

On small data K can exceed the number of val patches; it is then capped at that number and the cap is
recorded (``effective_ks``; the metric keeps the requested K in its name so runs stay comparable).

:mod:`dssl.evaluators.overcluster_neco` reuses this loop with NeCo's own preprocessing and faiss k-means.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from dssl.evaluators.base import EvaluationInputs, Measurement, dataset_info, mean_std
from dssl.evaluators.confusion import (
    ConfusionMatrix,
    apply_mapping,
    hungarian_match,
    many_to_one_match,
    miou,
    pixel_accuracy,
)
from dssl.evaluators.extraction import DenseCache, batches, resize_mask
from dssl.evaluators.kmeans_seg import FAISS_MAX_POINTS_PER_CENTROID, KMeansSegEvaluator
from dssl.evaluators.kmeans_seg_config import KMeansSegOptions
from dssl.evaluators.overcluster_config import OverclusterOptions


class OverclusterEvaluator(KMeansSegEvaluator):
    """Overclustering mIoU (many-to-one precision matching) for several K, mean ± std over seeds.

    Example:
        >>> ev = OverclusterEvaluator(OverclusterOptions(ks=[100]))  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc").metrics["miou_k100"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "overcluster"
    protocol: ClassVar[str] = "overcluster"
    protocol_version: ClassVar[int] = 2
    options_model: ClassVar[type[OverclusterOptions]] = OverclusterOptions  # type: ignore[assignment]
    #: Clustering implementation recorded in the settings.
    kmeans_impl: ClassVar[str] = "sklearn-lloyd"
    options: OverclusterOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Cluster the val patch features for every K and score the matched maps (many-to-one for K > C).

        Returns:
            ``miou_k<K>`` and ``pixel_accuracy_k<K>`` (percent, mean ± std over seeds) for each K.
        """
        opts = self.options
        info = dataset_info(inputs.val, "val")  # transductive on the val split, as kmeans_seg
        c = info.num_classes
        cache = self.extract(inputs, "val", info=info)
        # A PCA wider than the features is clamped (tiny test features); the used width is recorded.
        pca_dim = None if opts.pca_dim is None else min(opts.pca_dim, cache.dim)
        points = self._points(cache.features.reshape(-1, cache.dim), pca_dim)
        num_points = points.shape[0]
        metrics = {}
        ks = self._resolve_ks(c)
        effective_ks, fit_points_per_k, matching_per_k = [], [], []
        total = len(ks) * len(opts.seeds)
        done = 0
        for k_requested in ks:
            k = min(k_requested, num_points)
            max_fit = opts.max_fit_points if opts.max_fit_points is not None else FAISS_MAX_POINTS_PER_CENTROID * k
            fit_points = min(num_points, max_fit)
            matching = self._matching(k_requested, c)
            effective_ks.append(k)
            fit_points_per_k.append(fit_points)
            matching_per_k.append(matching)
            mious, accs = [], []
            for seed in opts.seeds:
                labels = self._cluster(points, k, fit_points, seed)
                conf = self._overcluster_confusion(labels, cache, c, k, info.ignore_index)
                if int(conf.sum()) == 0:
                    raise ValueError("the val set has no pixel outside ignore_index; nothing to score")
                if matching == "hungarian":
                    mapping = hungarian_match(conf, cost=opts.matching_cost, unmatched_to=0)
                else:
                    mapping = many_to_one_match(conf, score=opts.match_score)
                mapped = apply_mapping(conf, mapping)
                mious.append(100.0 * miou(mapped, opts.absent_classes)[0])
                accs.append(100.0 * pixel_accuracy(mapped))
                done += 1
                if inputs.progress is not None:
                    inputs.progress("kmeans", done, total)
            metrics[f"miou_k{k_requested}"] = mean_std(mious)
            metrics[f"pixel_accuracy_k{k_requested}"] = mean_std(accs)

        settings = {
            "ks": list(ks),
            "effective_ks": effective_ks,
            "num_classes": c,
            "ignore_index": info.ignore_index,
            "seeds": list(opts.seeds),
            "n_init": opts.n_init,
            "max_iter": opts.max_iter,
            "init": opts.init,
            "tol": opts.tol,
            "kmeans_impl": "faiss" if opts.kmeans_backend == "faiss" else self.kmeans_impl,
            "standardize": opts.standardize,
            "pca_dim": opts.pca_dim,
            "effective_pca_dim": pca_dim,
            "max_fit_points": opts.max_fit_points,
            "fit_points": fit_points_per_k,
            "fit_split": "val",
            "total_points": num_points,
            "matching": "many_to_one" if set(matching_per_k) == {"many_to_one"} else "per_k",
            "matching_per_k": matching_per_k,
            "match_score": opts.match_score,
            "matching_cost": opts.matching_cost,
            "unmatched_to": 0,
            "absent_classes": opts.absent_classes,
            **self.feature_settings(cache),
            "feature_dtype": opts.feature_dtype,
            "cluster_upsample": "nearest",
            "image_resize": "bilinear-antialias",
            "mask_resize": "nearest",
            "std_ddof": 1,
            "val_images": len(cache.features),
        }
        return metrics, settings

    def _resolve_ks(self, num_classes: int) -> list[int]:
        """The cluster counts to evaluate."""
        return list(self.options.ks)

    def _matching(self, k: int, num_classes: int) -> str:
        """``"many_to_one"`` for K > C; Hungarian otherwise (many-to-one with K <= C is not overclustering)."""
        return "many_to_one" if k > num_classes else "hungarian"

    def _points(self, features: Tensor, pca_dim: int | None) -> np.ndarray:
        """``(M, D)`` val patch features -> ``(M, d)`` float32 points (z-score, PCA)."""
        opts = self.options
        prep = KMeansSegEvaluator(KMeansSegOptions(standardize=opts.standardize, pca_dim=pca_dim))
        return prep._preprocess(features)

    def _overcluster_confusion(
        self, labels: np.ndarray, cache: DenseCache, num_classes: int, k: int, ignore_index: int | None
    ) -> Tensor:
        """Stream nearest-upsampled cluster maps into a ``(C, K)`` confusion matrix."""
        n = len(cache.features)
        clusters = torch.from_numpy(labels).view(n, *cache.grid_hw)
        cm = ConfusionMatrix(num_classes, k, ignore_index=ignore_index)
        for idx in batches(n, self.options.feature_batch_size):
            cm.update(cache.masks[idx].to(torch.int64), resize_mask(clusters[idx], cache.mask_hw))
        return cm.matrix
