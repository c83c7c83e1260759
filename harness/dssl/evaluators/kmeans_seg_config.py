"""Options of the unsupervised k-means segmentation evaluator (torch- and sklearn-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from dssl.evaluators.common_config import DenseEvalOptions, PositiveInt


class KMeansSegOptions(DenseEvalOptions):
    """k-means (K = number of classes) on validation patch features, Hungarian-matched to the classes.

    The NeCo/Leopart protocol (methods §6.2, §9) is approximately::

        KMeansSegOptions(input_size=448, mask_size=100, standardize=True, pca_dim=50, seeds=[0, 1, 2, 3, 4],
                         n_init=5, max_iter=100, init="random", absent_classes="zero")

    with scikit-learn's Lloyd k-means in place of faiss (same objective, different initialisation code, so
    numbers match only statistically).

    Attributes:
        seeds: One k-means run per seed (fit-point sampling and initialisation); mean ± std is reported.
        n_init: Restarts per seed, best inertia kept (faiss ``nredo``).
        max_iter: Lloyd iterations per restart (faiss ``niter``).
        init: ``"k-means++"`` or ``"random"`` (faiss and hence NeCo use random points).
        tol: scikit-learn's relative convergence tolerance.
        standardize: z-score every feature dimension over all validation patches first.
        pca_dim: Project onto the top principal components (no whitening, as faiss ``PCAMatrix``);
            ``None`` clusters the raw (or standardised) features.
        max_fit_points: Patches sampled (per seed, without replacement) to fit the centroids; every patch
            is then assigned. ``None`` means ``256 * K``, faiss's default cap that NeCo inherits.
        matching_cost: Hungarian cost, ``"iou"`` (NeCo, 1 - IoU) or ``"pixels"`` (STEGO).
        kmeans_backend: ``"sklearn"`` (default, the protocol's reference implementation) or ``"faiss"``
            (opt-in for machines where faiss is faster, e.g. a faiss GPU build; on a 2-core CPU it was
            slower than scikit-learn; the same objective, numbers agree statistically, not bit for bit:
            see ``dssl.evaluators.faiss_kmeans``). Recorded as ``kmeans_impl``.
    """

    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    n_init: PositiveInt = 5
    max_iter: PositiveInt = 100
    init: Literal["k-means++", "random"] = "k-means++"
    tol: Annotated[float, Field(ge=0)] = 1e-4
    standardize: bool = False
    pca_dim: PositiveInt | None = None
    max_fit_points: PositiveInt | None = None
    matching_cost: Literal["iou", "pixels"] = "iou"
    kmeans_backend: Literal["sklearn", "faiss"] = "sklearn"

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct (a repeated seed repeats the same run): {seeds}")
        return seeds
