"""Options of the PaKA objective (torch-free, so configs validate without importing torch).

PaKA's official code is not public (methods.md §2). Sources of the defaults, by tag:

* **[3P lightly]** ``lightly-ai/lightly`` ``PatchKernelAlignmentLoss`` (third-party re-implementation of the
  loss): linear kernel, CKA form, one kernel per image/pair, no token subsampling by default.
* **[3P lightly-train]** ``lightly-ai/lightly-train`` DINOv31 (cites "paper App. D.1"): 3-layer projector
  ``D -> 2048 -> 2048 -> 256`` with GELU, applied after ROI alignment, EMA-updated for the teacher.
* **[NeCo]** ``vpariza/NeCo`` post-training config the reviewers call "very similar" (methods.md §2.3): ROI grid
  7x7, teacher momentum 0.9995 -> 1, learning rates 1e-5 (backbone) / 1e-4 (head).
* **[INF]** our reconstruction where nothing public says (the guard, the pair rules, the bandwidth rule).

Example:
    >>> PaKAOptions(kernel="rbf", kernel_scope="batch").form
    'cka'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PaKAOptions"]


class PaKAOptions(BaseModel):
    """PaKA objective options (defaults and their sources in the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    out_dim: int = Field(256, gt=0, description="Projector output width [3P lightly-train, 'paper App. D.1'].")
    hidden_dim: int = Field(2048, gt=0, description="Projector hidden width [3P lightly-train, 'paper App. D.1'].")
    head_layers: int = Field(3, ge=1, description="Linear layers of the GELU projector MLP [3P lightly-train].")
    roi_grid: int = Field(
        7, ge=2, description="Side of the common grid both views are ROI-aligned onto [NeCo roi_align_kernel_size 7]."
    )
    roi_sampling_ratio: int = Field(
        1,
        ge=0,
        description="Bilinear samples per ROI-cell side, averaged, at torchvision.ops.roi_align's positions "
        "(0: adaptive ceil(ROI extent in feature cells / roi_grid) per ROI, torchvision's -1); 1: one sample at the "
        "cell centre [INF: lightly-train resamples with its own roi helper; sampling unknown].",
    )
    kernel: Literal["linear", "rbf"] = Field(
        "linear", description="Patch kernel: linear XX^T [3P lightly, emergentmind] or Gaussian RBF [3P emergentmind]."
    )
    rbf_bandwidth: Literal["median", "mean"] = Field(
        "median",
        description="RBF bandwidth rule [INF]: sigma^2 = median (or mean) of the valid off-diagonal squared "
        "distances of each kernel's own features (detached); K = exp(-d^2 / (2 sigma^2)).",
    )
    form: Literal["cka", "frobenius"] = Field(
        "cka",
        description="cka: 1 - CKA(HK_sH, HK_tH) [3P lightly]; frobenius: mean squared entry of HK_sH - HK_tH "
        "(normalisation by n^2 is [INF]).",
    )
    kernel_scope: Literal["pair", "batch"] = Field(
        "pair",
        description="pair: one kernel per aligned (teacher global, student crop) pair [3P lightly]; batch: one kernel "
        "over all aligned patches of the batch, gathered across ranks [INF, methods.md §2.2 open question].",
    )
    max_tokens: int | None = Field(
        None, ge=2, description="Random subsample of at most this many cells per kernel (None: all) [3P lightly]."
    )
    cka_eps: float = Field(
        1e-8,
        ge=0.0,
        description="Relative denominator guard [INF]: ||HKH||_F^2 + eps * tr(HKH)^2, scale- and shift-invariant "
        "(lightly's absolute clamp(1e-6) is not).",
    )
    student_globals: bool = Field(
        True,
        description="Also align the student's (photometrically augmented) global crops with every teacher global "
        "[INF from NeCo, which pairs teacher globals with all student crops].",
    )
    local_pairs: Literal["parent", "all"] = Field(
        "parent",
        description="parent: each student local is paired with the teacher global containing most of it (the one "
        "it was sampled inside); all: with every teacher global it overlaps [INF].",
    )
    min_overlap_cells: float = Field(
        1.0,
        ge=0.0,
        description="Drop a pair whose intersection spans fewer than this many patch cells of either view along "
        "either side (degenerate near-constant ROIs) [3P lightly-train _align_cross_view_pair].",
    )
    momentum_teacher: float = Field(
        0.9995, ge=0.0, le=1.0, description="Initial EMA momentum, cosine to 1 [NeCo neco_dinov2r.yml]."
    )
    backbone_lr_scale: float = Field(1.0, gt=0.0, description="LR multiplier of the backbone [NeCo lr 1e-5].")
    head_lr_scale: float = Field(
        10.0, gt=0.0, description="LR multiplier of the projector relative to the backbone [NeCo 1e-4 / 1e-5]."
    )
    drop_path_rate: float | None = Field(
        None, ge=0.0, lt=1.0, description="Student stochastic depth; None keeps the backbone's [UNK in the paper]."
    )
    evaluate: Literal["teacher", "student"] = Field(
        "teacher", description="Which backbone is evaluated [INF: the EMA teacher, as DINO/NeCo]."
    )
