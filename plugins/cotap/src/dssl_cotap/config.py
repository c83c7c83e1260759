"""Options of the CoTAP objective (torch-free): DINO's options plus the CoTAP / patch-pair / filter settings.

CoTAP's official code (``KID-7391/CoTAP``) is not public and its configs are unknown (methods.md §1.2), so every
CoTAP-specific default below is a **documented guess** of the reconstruction (methods.md §1.4), except where a
description names another source. The DINO fields are inherited unchanged from
:class:`~dssl.objectives.dino_config.DINOOptions` (``main_dino.py`` defaults): the paper keeps an image-level
self-distillation loss while post-training a DINO checkpoint [INF].

Example:
    >>> opts = CoTAPOptions(out_dim=4096, target="clamp")
    >>> opts.cotap_weight, opts.filter
    (1.0, 'identity')
"""

from __future__ import annotations

from typing import Any, Literal

from dssl.plugin import DINOOptions
from pydantic import Field, model_validator

__all__ = ["CoTAPOptions"]


class CoTAPOptions(DINOOptions):
    """CoTAP objective options (DINO's fields + the ones below; module docstring: sources)."""

    cotap_weight: float = Field(
        1.0, ge=0.0, description="λ in L = L_DINO + λ·L_CoTAP. Unknown in the paper; guess 1.0 (0 = plain DINO)."
    )
    patch_dim: int = Field(
        256, gt=0, description="Width of the patch projector output (guess: DINOHead's bottleneck width 256)."
    )
    patch_hidden_dim: int = Field(2048, gt=0, description="Hidden width of the patch projector MLP (DINOHead's).")
    patch_head_layers: int = Field(
        3,
        ge=0,
        description="Linear layers of the patch projector g (methods.md §1.4 'projector'; guess 3 like DINOHead). "
        "0: rank the backbone's patch tokens directly.",
    )
    target: Literal["softmax_max", "clamp"] = Field(
        "softmax_max",
        description="Teacher similarity T -> continuous target Y (methods.md §1.4): 'softmax_max' = "
        "softmax_j(T/τ_t)/max_j softmax_j(T/τ_t) = exp((T − max_j T)/τ_t) (option 1); 'clamp' = clamp(T, 0, 1) "
        "(option 2). Unknown which one the paper uses; guess option 1 (sharper, top target always 1).",
    )
    target_temp: float = Field(
        0.1, gt=0.0, description="τ_t of the 'softmax_max' targets (guess 0.1; cosine similarities in [-1, 1])."
    )
    rank_temp: float = Field(
        0.01, gt=0.0, description="τ_r of the sigmoid rank relaxation (Smooth-AP's default 0.01, Brown et al. 2020)."
    )
    min_target: float = Field(
        0.5,
        ge=-1.0,
        le=1.0,
        description="Queries whose best raw teacher cosine similarity (before the targets are normalised) is <= this "
        "are masked: a patch without a real match in the other image (hidden in the other view, an object missing "
        "from the neighbour) is not forced to rank its best noisy match first (methods.md §1.5). Guess 0.5; "
        "-1 masks nothing.",
    )
    pairs: list[Literal["views", "nn"]] = Field(
        default_factory=lambda: ["views", "nn"],
        min_length=1,
        description="Patch-level image pairs: 'views' = the two global views of one image; 'nn' = global view 0 of "
        "an image and of its nearest neighbour in the batch (STEGO-style pooled teacher features; the paper uses "
        "precomputed ImageNet neighbours, methods.md §1.1 [INF]). Guess: both.",
    )
    geometry: Literal["none", "positive", "mask"] = Field(
        "none",
        description="Use of the view geometry (dssl.augment.geometry.patch_correspondence) for the 'views' pair: "
        "'none' (default): the teacher similarity maps are the only targets, as the abstract describes "
        "(correspondences distilled, not strict spatial alignment); ablations: 'positive' adds target 1 at the "
        "geometrically corresponding patch, 'mask' keeps only queries visible in the other view.",
    )
    num_candidates: int | None = Field(
        None,
        gt=1,
        description="Rank only this many random candidate patches of the other image per query image "
        "(methods.md §1.5 memory option); None: all M.",
    )
    chunk_size: int | None = Field(
        16384,
        gt=0,
        description="(query, item) rows of the ranking tensor computed at once, each chunk checkpointed, so memory "
        "is O(chunk_size·M) instead of O(B·N·M²); same values and gradients. None: unchunked (reference).",
    )
    filter: str = Field(
        "identity",
        description="Patch filter before ranking: 'identity', or one installed under the 'dssl_cotap.filters' entry "
        "points ('oaf' from dssl-oaf: the paper's Object-Aware Filter).",
    )
    filter_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the filter (validated by the filter's own options model)."
    )

    @model_validator(mode="after")
    def _check_filter(self) -> CoTAPOptions:
        from pydantic import ValidationError

        from dssl_cotap.filters import validate_filter_options

        try:
            validate_filter_options(self.filter, self.filter_options)
        except ValidationError as exc:  # re-raised as a plain error so the key path is not misattributed
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"filter_options of filter {self.filter!r}: {problems}") from None
        return self
