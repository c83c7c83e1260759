"""Options of NeCo's overclustering protocol (torch-, sklearn- and faiss-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from dssl.evaluators.common_config import PositiveInt, Size
from dssl.evaluators.overcluster_config import OverclusterOptions

#: A ``ks`` entry meaning "as many clusters as the dataset has classes" (NeCo's K = GT, Hungarian-matched).
NUM_CLASSES = "num_classes"
#: Inherited scikit-learn settings that faiss (and hence NeCo) fixes.
_FIXED: dict[str, object] = {
    "init": "random",
    "tol": 1e-4,
    "max_fit_points": None,
    "match_score": "precision",
    "matching_cost": "iou",
    "kmeans_backend": "faiss",
}


class OverclusterNecoOptions(OverclusterOptions):
    """``eval_overcluster.py`` of ``vpariza/NeCo`` (commit 3932160), with its libraries (faiss).

    448 px input (``Resize((448, 448))``), masks nearest to 448 and then to 100x100, features of every val
    patch standardised (scikit-learn ``StandardScaler``, ``partial_fit`` in chunks of 100,000 rows) and
    projected by ``faiss.PCAMatrix`` to 50 dimensions, ``faiss.Kmeans(niter=100, nredo=5, seed=s)`` for
    seeds 0..4 (random initialisation; faiss trains on at most 256·K points), cluster maps nearest-upsampled
    to 100x100, ignore pixels dropped, Hungarian matching when K = C and precision-based many-to-one
    matching when K > C, every class in the mean (absent ones 0), mean over seeds.

    Attributes:
        ks: Cluster counts; ``"num_classes"`` is the dataset's number of classes (Hungarian). NeCo's
            README reports K = 500. A K below the number of classes is refused: NeCo does not publish it
            and many-to-one matching with fewer clusters than classes is not overclustering.

    The scikit-learn k-means settings inherited from ``OverclusterOptions`` (``init``, ``tol``,
    ``max_fit_points``, ``match_score``, ``matching_cost``, ``kmeans_backend``) are fixed to NeCo's values
    and must not be changed; ``n_init``, ``max_iter``, ``seeds``, ``standardize`` and ``pca_dim`` map to faiss's
    ``nredo``, ``niter``, ``seed``, the scaler and ``PCAMatrix``.
    """

    input_size: Size | None = 448
    mask_size: Size | None = 100
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] = "zero"
    ks: list[Annotated[int, Field(ge=2)] | Literal["num_classes"]] = Field(  # type: ignore[assignment]
        default_factory=lambda: [NUM_CLASSES, 500], min_length=1
    )
    seeds: list[Annotated[int, Field(ge=0, lt=2**31)]] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    n_init: PositiveInt = 5
    max_iter: PositiveInt = 100
    kmeans_backend: Literal["sklearn", "faiss"] = "faiss"

    @field_validator("ks")
    @classmethod
    def _distinct_ks(cls, ks: list[int | str]) -> list[int | str]:
        if len(set(ks)) != len(ks):
            raise ValueError(f"ks must be distinct: {ks}")
        return ks

    @field_validator("init", "tol", "max_fit_points", "match_score", "matching_cost", "kmeans_backend")
    @classmethod
    def _fixed_by_faiss(cls, value: object, info: ValidationInfo) -> object:
        field = info.field_name or ""
        if value != _FIXED[field]:
            raise ValueError(f"{field} is fixed to NeCo's {_FIXED[field]!r} in overcluster_neco (faiss k-means)")
        return value
