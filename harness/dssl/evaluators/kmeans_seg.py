"""Unsupervised segmentation by k-means on frozen patch features (protocol ``kmeans_seg``, version 1).

Pipeline (after NeCo/Leopart ``eval_overcluster.py`` with K = number of classes, methods §6.2):

1. Val features are extracted once; the train split is not used (the protocol clusters the val set).
2. Optionally z-score every dimension and project onto the top ``pca_dim`` principal components
   (computed exactly from the streamed covariance, no whitening).
3. Per seed: fit scikit-learn ``KMeans`` on at most ``max_fit_points`` sampled patches, assign every patch,
   nearest-upsample the cluster maps to the mask resolution, stream them into a ``(C, K)`` confusion
   matrix (ignore pixels dropped), Hungarian-match clusters to classes and score mIoU.
4. Report mean ± sample std (ddof 1) over seeds.

Notes:
    * K is the dataset's ``num_classes``. When ``ignore_index`` is itself a class id (ADE20K-151 with
      0 ignored), that class has no ground-truth pixel, yet one cluster is still matched to it and its
      pixels count as errors, exactly as in NeCo; with the default ``absent_classes="exclude_no_gt"`` the
      empty class is left out of the mean, with ``"zero"`` it adds a 0 as in NeCo.
    * Fitting on patches from ignored regions is intended (NeCo clusters every patch); only scoring
      drops ignored pixels.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

from dssl.errors import ConfigError
from dssl.evaluators.base import DenseEvaluator, EvaluationInputs, Measurement, dataset_info, mean_std
from dssl.evaluators.confusion import ConfusionMatrix, apply_mapping, hungarian_match, miou, pixel_accuracy
from dssl.evaluators.extraction import DenseCache, batches, resize_mask
from dssl.evaluators.faiss_kmeans import faiss_kmeans_labels
from dssl.evaluators.kmeans_seg_config import KMeansSegOptions

#: faiss caps k-means training at this many points per centroid; NeCo inherits it.
FAISS_MAX_POINTS_PER_CENTROID = 256
#: Rows per chunk when streaming statistics over all patches (bounds float64 temporaries).
_CHUNK = 65536


class KMeansSegEvaluator(DenseEvaluator[KMeansSegOptions]):
    """k-means + Hungarian mIoU of frozen dense features, mean ± std over seeds.

    Example:
        >>> ev = KMeansSegEvaluator(KMeansSegOptions(seeds=[0, 1]))  # doctest: +SKIP
        >>> result = ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc")  # doctest: +SKIP
        >>> result.metrics["miou"].value  # doctest: +SKIP
    """

    name: ClassVar[str] = "kmeans_seg"
    protocol: ClassVar[str] = "kmeans_seg"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[KMeansSegOptions]] = KMeansSegOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Cluster the val patch features and score the Hungarian-matched cluster maps.

        Args:
            inputs: What :meth:`evaluate` received. ``train`` is unused (the protocol clusters ``val``); k-means
                runs on the CPU whatever the ``device``; progress stages ``features/val`` and ``kmeans`` (seeds).

        Returns:
            ``miou`` and ``pixel_accuracy`` in percent as mean ± std over seeds (``n`` = number of seeds).
        """
        opts = self.options
        info = dataset_info(inputs.val, "val")  # transductive: the protocol clusters the val split only
        k = info.num_classes
        cache = self.extract(inputs, "val", info=info)
        points = self._preprocess(cache.features.reshape(-1, cache.dim))
        num_points = points.shape[0]
        if num_points < k:
            raise ValueError(f"only {num_points} patches for K={k} clusters; use more val images")
        max_fit = opts.max_fit_points if opts.max_fit_points is not None else FAISS_MAX_POINTS_PER_CENTROID * k
        fit_points = min(num_points, max_fit)

        mious, accs = [], []
        for i, seed in enumerate(opts.seeds):
            labels = self._cluster(points, k, fit_points, seed)
            conf = self._confusion(labels, cache, k, info.ignore_index)
            if int(conf.sum()) == 0:
                raise ValueError("the val set has no pixel outside ignore_index; nothing to score")
            mapped = apply_mapping(conf, hungarian_match(conf, cost=opts.matching_cost, unmatched_to=0))
            mious.append(100.0 * miou(mapped, opts.absent_classes)[0])
            accs.append(100.0 * pixel_accuracy(mapped))
            if inputs.progress is not None:
                inputs.progress("kmeans", i + 1, len(opts.seeds))

        settings = {
            "K": k,
            "num_classes": info.num_classes,
            "ignore_index": info.ignore_index,
            "seeds": list(opts.seeds),
            "n_init": opts.n_init,
            "max_iter": opts.max_iter,
            "init": opts.init,
            "tol": opts.tol,
            "kmeans_impl": "faiss" if opts.kmeans_backend == "faiss" else "sklearn-lloyd",
            "standardize": opts.standardize,
            "pca_dim": opts.pca_dim,
            "max_fit_points": opts.max_fit_points,
            "fit_points": fit_points,
            "fit_split": "val",
            "total_points": num_points,
            **self.feature_settings(cache),
            "feature_dtype": opts.feature_dtype,
            "matching": "hungarian",
            "matching_cost": opts.matching_cost,
            "unmatched_to": 0,
            "absent_classes": opts.absent_classes,
            "cluster_upsample": "nearest",
            "image_resize": "bilinear-antialias",
            "mask_resize": "nearest",
            "std_ddof": 1,
            "val_images": len(cache.features),
        }
        return {"miou": mean_std(mious), "pixel_accuracy": mean_std(accs)}, settings

    def _preprocess(self, x: Tensor) -> np.ndarray:
        """``(M, D)`` features -> ``(M, d)`` float32 points (standardised and/or PCA-projected)."""
        opts = self.options
        m, d = x.shape
        if not opts.standardize and opts.pca_dim is None:
            return np.ascontiguousarray(x.to(torch.float32).numpy())
        if opts.pca_dim is not None and opts.pca_dim > d:
            raise ConfigError(f"pca_dim={opts.pca_dim} exceeds the feature dimension {d}")
        # Two streamed float64 passes (mean, then centred second moments): exact and numerically stable.
        mean = torch.zeros(d, dtype=torch.float64)
        for chunk in x.split(_CHUNK):
            mean += chunk.to(torch.float64).sum(dim=0)
        mean /= m
        scale = torch.ones(d, dtype=torch.float64)
        if opts.standardize:
            var = torch.zeros(d, dtype=torch.float64)
            for chunk in x.split(_CHUNK):
                var += ((chunk.to(torch.float64) - mean) ** 2).sum(dim=0)
            scale = (var / m).sqrt()  # population std, as sklearn's StandardScaler
            scale[scale < 1e-12] = 1.0  # constant dimensions stay at 0 instead of dividing by 0
        projection = torch.eye(d, dtype=torch.float64)
        if opts.pca_dim is not None:
            cov = torch.zeros((d, d), dtype=torch.float64)
            for chunk in x.split(_CHUNK):
                y = (chunk.to(torch.float64) - mean) / scale
                cov += y.T @ y
            _, vectors = torch.linalg.eigh(cov / m)  # ascending eigenvalues
            projection = vectors[:, -opts.pca_dim :].flip(dims=(1,))
            # eigh's sign is arbitrary; fix it so identical features give identical points everywhere.
            signs = torch.sign(projection[projection.abs().argmax(dim=0), torch.arange(projection.shape[1])])
            projection = projection * torch.where(signs == 0, 1.0, signs)
        out = np.empty((m, projection.shape[1]), dtype=np.float32)
        row = 0
        for chunk in x.split(_CHUNK):
            y = ((chunk.to(torch.float64) - mean) / scale) @ projection
            out[row : row + len(chunk)] = y.to(torch.float32).numpy()
            row += len(chunk)
        return out

    def _cluster(self, points: np.ndarray, k: int, fit_points: int, seed: int) -> np.ndarray:
        """Fit k-means on a seeded sample of ``points`` and return ``(M,)`` cluster ids of all points."""
        opts = self.options
        num_points = points.shape[0]
        if fit_points < num_points:
            rng = np.random.default_rng(seed)
            sample = points[np.sort(rng.choice(num_points, size=fit_points, replace=False))]
        else:
            sample = points
        if opts.kmeans_backend == "faiss":
            return faiss_kmeans_labels(
                sample, points, k, n_init=opts.n_init, max_iter=opts.max_iter, init=opts.init, seed=seed
            )
        kmeans = KMeans(
            n_clusters=k,
            init=opts.init,
            n_init=opts.n_init,
            max_iter=opts.max_iter,
            tol=opts.tol,
            random_state=seed,
        ).fit(sample)
        return kmeans.predict(points).astype(np.int64)

    def _confusion(self, labels: np.ndarray, cache: DenseCache, k: int, ignore_index: int | None) -> Tensor:
        """Stream nearest-upsampled cluster maps into a ``(C, K)`` confusion matrix."""
        n = len(cache.features)
        clusters = torch.from_numpy(labels).view(n, *cache.grid_hw)
        cm = ConfusionMatrix(k, k, ignore_index=ignore_index)
        for idx in batches(n, self.options.feature_batch_size):
            cm.update(cache.masks[idx].to(torch.int64), resize_mask(clusters[idx], cache.mask_hw))
        return cm.matrix
