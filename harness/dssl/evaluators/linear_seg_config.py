"""Options of the linear segmentation probe (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dssl.evaluators.common_config import DenseEvalOptions, PositiveInt

PositiveFloat = Annotated[float, Field(gt=0)]


class LinearSegOptions(DenseEvalOptions):
    """Linear probe (1x1 convolution) on cached frozen patch features.

    The defaults suit short embedded runs on small datasets (AdamW converges in few steps without a
    tuned learning rate). The NeCo/Leopart protocol (methods §6.1) is::

        LinearSegOptions(input_size=448, mask_size=100, optimizer="sgd", lr=0.01, weight_decay=1e-4,
                         epochs=25, schedule="step", step_epochs=20, step_gamma=0.1, batch_size=128,
                         absent_classes="zero")

    minus its train-time RandomResizedCrop/flip: features are extracted once, so there is no augmentation.

    Attributes:
        optimizer: ``"adamw"`` or ``"sgd"`` (with ``momentum``).
        lr: Peak learning rate.
        weight_decay: Weight decay (decoupled for AdamW).
        momentum: SGD momentum (unused by AdamW).
        epochs: Passes over the cached training features.
        batch_size: Images per optimisation step.
        schedule: ``"cosine"`` (per step, to 0), ``"step"`` (×``step_gamma`` every ``step_epochs``) or
            ``"constant"``.
        step_epochs: Period of the step schedule.
        step_gamma: Factor of the step schedule.
        batchnorm: Put a ``BatchNorm2d`` (affine) in front of the 1x1 convolution.
        select_best_epoch: Score the head on the val split after every epoch and report the best epoch
            (NeCo's checkpoint selection on the validation set, which is also the reported split); off by
            default, when the last epoch's head is scored.
        seed: Seeds the head initialisation and the shuffling (results are deterministic on CPU).
        logits_chunk_images: Compute the mask-resolution logits, the loss and the predictions this many
            images at a time, accumulating the gradient of the whole batch (the loss is still the mean over
            the batch's valid pixels). ``None`` (default, the protocol's reference computation) does the
            whole batch at once. At full resolution the logits and their gradients dominate memory
            (``batch_size * C * H * W`` floats, several times over: ~2 GB per copy at ADE20K's 151 classes,
            448 px, batch 16), so this bounds the probe's memory; numbers agree up to float rounding, not
            bit for bit, hence opt-in. Not with ``batchnorm`` (its statistics would become per chunk).
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 16
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_epochs: PositiveInt = 20
    step_gamma: PositiveFloat = 0.1
    batchnorm: bool = False
    select_best_epoch: bool = False
    seed: int = 0
    logits_chunk_images: PositiveInt | None = None

    @model_validator(mode="after")
    def _chunks_keep_batch_statistics(self) -> LinearSegOptions:
        if self.logits_chunk_images is not None and self.batchnorm:
            raise ValueError(
                "logits_chunk_images cannot be combined with batchnorm (BatchNorm statistics would be per chunk)"
            )
        return self
