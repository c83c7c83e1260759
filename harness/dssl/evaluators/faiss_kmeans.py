"""Optional faiss k-means behind the k-means protocols (``kmeans_backend="faiss"``).

faiss (``pip install dssl-bench[faiss]``) runs Lloyd's algorithm with BLAS distance blocks and OpenMP
threads (and on a GPU with a faiss GPU build). It is not faster everywhere: on the 2-core CPU VM of
benchmarks/RESULTS.md ("Dense evaluators at real scale") scikit-learn was faster (K = 500, 128,000
points x 50 dims, one restart: 6.5 CPU s, 42 iterations to ``tol``, against faiss's 12.0 CPU s for its
fixed 100 iterations), so measure before choosing it. It is the same objective but not the same
algorithm run for run: faiss always runs ``niter`` iterations (no ``tol`` stop), draws its own random
initial centroids, and keeps the restart with the lowest objective. The k-means++ initialisation is
reproduced by seeding each restart with scikit-learn's ``kmeans_plusplus``. Numbers therefore agree with
the scikit-learn backend statistically (same protocol, within its seed spread), not bit for bit, and the
backend is recorded in every result (``kmeans_impl``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dssl.errors import ConfigError


def import_faiss(user: str) -> Any:
    """The ``faiss`` module, or a :class:`ConfigError` that names ``user`` and says how to install it."""
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            f"{user} uses faiss, which is not installed: pip install dssl-bench[faiss] (or pip install faiss-cpu)"
        ) from None
    return faiss


def faiss_kmeans_labels(
    sample: np.ndarray,
    points: np.ndarray,
    k: int,
    *,
    n_init: int,
    max_iter: int,
    init: str,
    seed: int,
) -> np.ndarray:
    """Fit k-means on ``sample`` with faiss and assign every row of ``points`` to its nearest centroid.

    Args:
        sample: ``(n, d)`` float32 fit points (already subsampled by the caller; faiss does not resample).
        points: ``(M, d)`` float32 points to assign.
        k: Clusters.
        n_init: Restarts; the lowest final objective wins.
        max_iter: Lloyd iterations per restart.
        init: ``"random"`` (faiss's own random points) or ``"k-means++"`` (scikit-learn's seeding).
        seed: Seeds restart ``r`` with ``seed + r`` (faiss) and the k-means++ draws.

    Returns:
        ``(M,)`` int64 cluster ids.
    """
    faiss = import_faiss("kmeans_backend='faiss'")
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    d = sample.shape[1]
    best: tuple[float, Any] | None = None
    for restart in range(n_init):
        kmeans = faiss.Kmeans(
            d,
            k,
            niter=max_iter,
            nredo=1,
            seed=seed + restart,
            verbose=False,
            # The caller's sample is the fit set: no second subsampling, no warning about small clusters.
            max_points_per_centroid=math.ceil(len(sample) / k) + 1,
            min_points_per_centroid=1,
        )
        centroids = None
        if init == "k-means++":
            from sklearn.cluster import kmeans_plusplus

            centroids, _ = kmeans_plusplus(sample, k, random_state=(seed + restart) % 2**32)
            centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        kmeans.train(sample, init_centroids=centroids)
        objective = float(kmeans.obj[-1]) if len(kmeans.obj) else math.inf
        if best is None or objective < best[0]:
            best = (objective, kmeans)
    assert best is not None
    _, assigned = best[1].index.search(np.ascontiguousarray(points, dtype=np.float32), 1)
    return assigned.reshape(-1).astype(np.int64)
