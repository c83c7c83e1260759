"""Options of the UDI objective (torch-free, so configs validate without importing torch).

Defaults are the argparse defaults of ``main_udi.py`` in ISL-CV/udi (commit 133c2cb). Like the DINO baseline
(whose options this model extends), warm-ups given in **epochs** by the reference become fractions of the run
(or explicit step counts): ``--warmup_teacher_temp_epochs 30`` of ``--epochs 300`` → 0.1, and
``--freeze_last_layer 1`` epoch of 300 → 1/300. Learning-rate / weight-decay schedules (lr 5e-4 × batch/256,
cosine to 1e-5, wd 0.04 → 0.1), clipping (3.0) and the optimizer (AdamW) belong to the engine's ``optim``
section and are set by the GPU preset in ``registry.yaml``.

Example:
    >>> opts = UDIOptions(out_dim=4096)
    >>> opts.alpha, opts.teacher_temp, opts.warmup_teacher_temp_steps_for(3000)
    (0.5, 0.07, 300)
"""

from __future__ import annotations

from dssl.plugin import DINOOptions
from pydantic import ConfigDict, Field

__all__ = ["UDIOptions"]


class UDIOptions(DINOOptions):
    """UDI options: DINO's (head, EMA, temperatures, centring, last-layer freezing, drop path) plus UDI's own."""

    model_config = ConfigDict(extra="forbid")

    norm_last_layer: bool = Field(
        True,
        description="Freeze the weight-norm gain of the head's last layer (main_udi.py --norm_last_layer default "
        "True; the README's 300-epoch ViT-S command uses false, as the GPU preset does).",
    )
    teacher_temp: float = Field(
        0.07, gt=0.0, description="Teacher temperature after the warm-up (main_udi.py --teacher_temp 0.07)."
    )
    warmup_teacher_temp: float = Field(
        0.04, gt=0.0, description="Teacher temperature at step 0 (main_udi.py --warmup_teacher_temp 0.04)."
    )
    warmup_teacher_temp_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Teacher-temperature warm-up as a fraction of the run (--warmup_teacher_temp_epochs 30 of 300).",
    )
    freeze_last_layer_fraction: float = Field(
        1 / 300,
        ge=0.0,
        le=1.0,
        description="Fraction of the run with the head's last layer not updated (--freeze_last_layer 1 of 300 epochs).",
    )
    alpha: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Blend of the [CLS+] target logits: alpha * pooled teacher patch logits + (1 - alpha) * "
        "teacher [CLS] logits (main_udi.py --alpha 0.5; 'higher if training is unstable').",
    )
    global_window: int = Field(
        3,
        ge=1,
        description="SRS window on the global patch grid (--global_sampling_window_size 3: 14x14 grid -> 4x4 "
        "windows, one sample each). A grid smaller than the window gets one window covering it.",
    )
    local_window: int = Field(
        2,
        ge=1,
        description="SRS window on the local patch grid (--local_sampling_window_size 2: 6x6 grid -> 9 samples).",
    )
    srs_seed: int = Field(
        0,
        ge=0,
        description="Seed of the SRS positions, drawn in the objective per step (reconstruction: the official "
        "code draws them in the data loader; see README 'Differences').",
    )
