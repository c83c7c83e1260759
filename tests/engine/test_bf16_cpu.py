"""``precision: bf16`` on the CPU: autocast runs the GPU track's bf16 code paths, and every objective trains
with finite losses computed in float32."""

from __future__ import annotations

import math

import pytest
import torch
from dssl.engine.trainer import autocast_dtype

from tests.engine.compiled_training import METHODS, train_two_steps


def test_explicit_bf16_autocasts_on_the_cpu_and_auto_stays_fp32() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("fp16", cpu) is None
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16


@pytest.mark.parametrize("method", list(METHODS))
def test_objective_trains_in_bf16_with_float32_losses(method: str) -> None:
    run = train_two_steps(method, precision="bf16")
    assert run.block_dtypes == {torch.bfloat16}, "the transformer blocks' linear layers did not run in bf16"
    assert all(math.isfinite(x) for x in run.losses), run.losses
    # The loss and its terms (softmaxes, log-softmaxes, kernels, Sinkhorn) are computed in float32.
    assert run.output_dtypes["loss"] == torch.float32
    low = {k: d for k, d in run.output_dtypes.items() if d in (torch.bfloat16, torch.float16)}
    assert not low, f"terms left in low precision: {low}"
