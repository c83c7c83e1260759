"""NeCo's overclustering evaluation as published (protocol ``overcluster_neco``, version 1).

Reproduces ``experiments/overcluster/eval_overcluster.py`` of ``vpariza/NeCo`` (commit 3932160) with the
libraries it uses, so that its numbers are comparable with NeCo's tables (methods §6.2-6.3):

1. Val images resized to 448x448, every patch token extracted; masks nearest-resized to 448 and then to
   100x100.
2. ``normalize_and_transform``: scikit-learn ``StandardScaler`` fitted with ``partial_fit`` on chunks of
   100,000 rows and applied chunk by chunk, then ``faiss.PCAMatrix(D, 50)`` (no whitening) trained and
   applied on all standardised patches.
3. Per seed ``s`` in 0..4: ``faiss.Kmeans(50, K, niter=100, nredo=5, seed=s)`` trained on all points (faiss
   itself samples at most 256·K of them, random initialisation), every patch assigned to its nearest
   centroid; cluster maps nearest-upsampled to 100x100.
4. Ignore pixels dropped; ``PredsmIoU(K, C)``: Hungarian matching (``1 - IoU``, unmatched clusters to
   class 0) when K = C, precision-based greedy many-to-one matching when K > C; IoU per class with every
   class in the mean (absent classes 0); mean (± std) over seeds.

faiss is an optional dependency (``pip install dssl-bench[faiss]``); without it this evaluator fails
with that instruction. Differences that remain: the val images are resized with antialiased bilinear
interpolation (torchvision ``Resize`` on PIL images in the reference), and a K above the number of val
patches is capped at it (faiss would refuse; only tiny data reach that, and the cap is recorded).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from dssl.errors import ConfigError
from dssl.evaluators.faiss_kmeans import import_faiss as import_faiss_for
from dssl.evaluators.overcluster import OverclusterEvaluator
from dssl.evaluators.overcluster_neco_config import NUM_CLASSES, OverclusterNecoOptions

#: Rows per ``StandardScaler.partial_fit`` / ``transform`` call in NeCo's ``normalize_and_transform``.
NECO_SCALER_CHUNK = 100_000


def import_faiss() -> Any:
    """The ``faiss`` module, or a :class:`ConfigError` saying how to install it."""
    return import_faiss_for("overcluster_neco (as NeCo does)")


class OverclusterNecoEvaluator(OverclusterEvaluator):
    """NeCo's ``eval_overcluster`` (see the module docstring): faiss PCA and k-means, 5 seeds.

    Example:
        >>> ev = OverclusterNecoEvaluator()  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc2012").metrics["miou_k500"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "overcluster_neco"
    protocol: ClassVar[str] = "overcluster_neco"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[OverclusterNecoOptions]] = OverclusterNecoOptions  # type: ignore[assignment]
    kmeans_impl: ClassVar[str] = "faiss"

    options: OverclusterNecoOptions

    def __init__(self, options: OverclusterNecoOptions | None = None) -> None:
        super().__init__(options)
        self._faiss = import_faiss()

    def _resolve_ks(self, num_classes: int) -> list[int]:
        ks = [num_classes if k == NUM_CLASSES else int(k) for k in self.options.ks]
        if len(set(ks)) != len(ks):
            raise ConfigError(f"ks {self.options.ks} name the same K twice for {num_classes} classes")
        too_few = [k for k in ks if k < num_classes]
        if too_few:
            raise ConfigError(
                f"overcluster_neco: K {too_few} below the number of classes ({num_classes}); NeCo's protocol "
                "uses K = C (Hungarian) or K > C (many-to-one)"
            )
        return ks

    def _matching(self, k: int, num_classes: int) -> str:
        return "hungarian" if k == num_classes else "many_to_one"

    def _points(self, features: Tensor, pca_dim: int | None) -> np.ndarray:
        """NeCo's ``normalize_and_transform``: chunked ``StandardScaler``, then ``faiss.PCAMatrix``."""
        from sklearn.preprocessing import StandardScaler

        x = np.ascontiguousarray(features.float().numpy())
        if self.options.standardize:
            scaler = StandardScaler()
            for first in range(0, len(x), NECO_SCALER_CHUNK):
                scaler.partial_fit(x[first : first + NECO_SCALER_CHUNK])
            for first in range(0, len(x), NECO_SCALER_CHUNK):
                x[first : first + NECO_SCALER_CHUNK] = scaler.transform(x[first : first + NECO_SCALER_CHUNK])
        if pca_dim is None:
            return x
        pca = self._faiss.PCAMatrix(x.shape[1], pca_dim)
        pca.train(x)
        return np.ascontiguousarray(pca.apply(x), dtype=np.float32)

    def _cluster(self, points: np.ndarray, k: int, fit_points: int, seed: int) -> np.ndarray:
        """``faiss.Kmeans(d, K, niter, nredo, seed)`` trained on all points (faiss samples 256·K itself)."""
        del fit_points  # faiss applies the same 256·K cap with its own seeded sampling
        opts = self.options
        kmeans = self._faiss.Kmeans(
            points.shape[1], k, niter=opts.max_iter, nredo=opts.n_init, seed=seed, verbose=False, spherical=False
        )
        kmeans.train(points)
        _, assigned = kmeans.index.search(points, 1)
        return assigned.reshape(-1).astype(np.int64)
