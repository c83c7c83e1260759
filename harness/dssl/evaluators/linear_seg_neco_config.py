"""Options of the NeCo/Leopart linear segmentation protocol (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dssl.evaluators.common_config import PositiveInt, Size
from dssl.evaluators.linear_seg_config import LinearSegOptions, PositiveFloat


class LinearSegNecoOptions(LinearSegOptions):
    """``LinearSegOptions`` whose defaults are NeCo/Leopart's linear protocol (methods §6.1).

    Sources: ``vpariza/NeCo`` ``experiments/linear_segmentation/linear_finetune.py`` and its configs:
    input 448x448 (aspect ratio not kept), logits and masks at 100x100, SGD lr 0.01 momentum 0.9
    weight decay 1e-4, 25 epochs, ``StepLR(20, 0.1)``, batch 128, classes without pixels scored 0 in the
    mean (``PredsmIoU``, ``max(., 1e-8)`` denominators). Differences: features are cached once, so there
    is no train-time RandomResizedCrop/flip, NeCo's ``val_iters: 512`` cap is not applied, and the last
    epoch's head is scored: NeCo keeps the epoch with the best val mIoU (its ``ModelCheckpoint`` monitors
    ``miou_val`` on the split it reports), which ``select_best_epoch=True`` reproduces (off by default,
    because it selects on the test split).
    """

    input_size: Size | None = 448
    mask_size: Size | None = 100
    optimizer: Literal["adamw", "sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    epochs: PositiveInt = 25
    batch_size: PositiveInt = 128
    schedule: Literal["cosine", "step", "constant"] = "step"
    step_epochs: PositiveInt = 20
    step_gamma: PositiveFloat = 0.1
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] = "zero"
