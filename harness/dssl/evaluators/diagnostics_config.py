"""Options of the diagnostic evaluators ``concentration`` and ``dse`` (torch-free)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dssl.evaluators.common_config import DenseEvalOptions, PositiveInt


class ConcentrationOptions(DenseEvalOptions):
    """Semantic concentration of patch features on the val split (methods §6.5, harness diagnostics).

    Attributes:
        min_purity: A patch takes the majority label of its pixels and is kept only if that label
            covers at least this fraction of the patch (patches whose majority is ignore are dropped).
        rank_patches: Patches sampled (seeded) for the effective rank (an SVD of ``(n, D)``).
        seed: Seeds the effective-rank sample.
        chunk_images: Val images normalised and summed at a time (bounds the extra memory to one chunk;
            the metrics do not depend on it beyond float64 rounding).
    """

    min_purity: Annotated[float, Field(ge=0, le=1)] = 0.5
    rank_patches: PositiveInt = 20_000
    seed: int = 0
    chunk_images: PositiveInt = 64


class DSEOptions(DenseEvalOptions):
    """DSE, Dense representation Structure Estimator (Dai et al., NeurIPS 2025; methods §6.5, §9).

    Defaults follow the reference function ``compute_DSE`` of ``EldercatSAM/SSL-Degradation``
    ``estimator.py``: 3 local and 24 global clusters (its command line uses 5 / 20), images grouped 8
    at a time, 20 Lloyd iterations from a distance-proportional k-means++ initialisation.

    Attributes:
        local_clusters: k-means clusters within one image (``M_intra`` image term).
        global_clusters: k-means clusters within a group of images (``M_inter`` and batch ``M_intra``).
        group_size: Images per group.
        kmeans_iters: Lloyd iterations.
        normalize: L2-normalise patch features first.
        max_images: Use at most the first this many val images (cost grows linearly).
        seed: Seeds every k-means initialisation (the reference re-seeds the global RNG instead).
    """

    local_clusters: PositiveInt = 3
    global_clusters: PositiveInt = 24
    group_size: PositiveInt = 8
    kmeans_iters: PositiveInt = 20
    normalize: bool = True
    max_images: PositiveInt = 512
    seed: int = 0
