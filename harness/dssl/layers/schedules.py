"""Per-step value schedules (learning rate, weight decay, EMA momentum, temperatures).

Both schedules reproduce the numerics of the DINO reference code (facebookresearch/dino), but are indexed by
optimisation step instead of epoch:

* :func:`cosine_schedule` is ``utils.cosine_scheduler`` (linear warm-up with ``np.linspace``, then a half
  cosine that, like the original, never quite reaches ``final`` on its last step);
* :func:`linear_warmup_then_constant` is ``DINOLoss.teacher_temp_schedule``: ``np.linspace`` (endpoint
  **included**) over the warm-up, then constant.

Values are returned as float64 tensors so that they match the NumPy reference to the last bit; read one
with :func:`schedule_value`, which clamps steps past the end to the last value.

Example:
    >>> s = linear_warmup_then_constant(0.04, 0.07, warmup_steps=5, total_steps=8)
    >>> round(float(s[2]), 6)
    0.055
    >>> m = cosine_schedule(0.996, 1.0, total_steps=100)
    >>> float(m[0])
    0.996
"""

from __future__ import annotations

import math

import torch

__all__ = ["cosine_schedule", "linear_warmup_then_constant", "linspace_np", "schedule_scalar", "schedule_value"]


def linspace_np(start: float, stop: float, num: int) -> torch.Tensor:
    """``np.linspace(start, stop, num)`` (endpoint included) as a float64 tensor, bit-identical to NumPy.

    NumPy computes ``arange(num) * step + start`` with ``step = (stop - start) / (num - 1)`` and then sets the
    last element to ``stop`` exactly; ``torch.linspace`` interpolates from both ends and can differ in the
    last bit, so it is not used here.

    Args:
        start: First value.
        stop: Last value (included when ``num > 1``).
        num: Number of values (``>= 0``).

    Returns:
        Tensor of shape ``(num,)``, dtype float64.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if num == 0:
        return torch.empty(0, dtype=torch.float64)
    if num == 1:
        return torch.full((1,), float(start), dtype=torch.float64)
    step = (float(stop) - float(start)) / (num - 1)
    out = torch.arange(num, dtype=torch.float64) * step + float(start)
    out[-1] = float(stop)
    return out


def cosine_schedule(
    base: float,
    final: float,
    total_steps: int,
    warmup_steps: int = 0,
    start_warmup: float = 0.0,
) -> torch.Tensor:
    """Linear warm-up followed by a half-cosine decay from ``base`` to ``final``; one value per step.

    Exactly DINO's ``utils.cosine_scheduler(base, final, epochs, niter_per_ep, warmup_epochs,
    start_warmup_value)`` with ``epochs * niter_per_ep = total_steps`` and ``warmup_epochs * niter_per_ep =
    warmup_steps``::

        warmup = np.linspace(start_warmup, base, warmup_steps)          # endpoint included
        i = np.arange(total_steps - warmup_steps)
        cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * i / len(i)))

    The cosine part starts at ``base`` and ends at ``final + 0.5 (base - final)(1 + cos(pi (n-1)/n))``, i.e.
    just short of ``final`` (as in the reference).

    Args:
        base: Value after the warm-up (peak learning rate, initial EMA momentum, ...).
        final: Asymptotic value at the end of the cosine.
        total_steps: Length of the schedule (warm-up included), ``>= 0``.
        warmup_steps: Number of linear warm-up steps, ``0 <= warmup_steps <= total_steps``.
        start_warmup: First value of the warm-up.

    Returns:
        Tensor of shape ``(total_steps,)``, dtype float64.

    Example:
        >>> lr = cosine_schedule(5e-4, 1e-6, total_steps=1000, warmup_steps=100)
        >>> float(lr[99]) == 5e-4
        True
    """
    if total_steps < 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got {warmup_steps=} {total_steps=}")
    warmup = linspace_np(start_warmup, base, warmup_steps)
    n = total_steps - warmup_steps
    i = torch.arange(n, dtype=torch.float64)
    cosine = final + 0.5 * (base - final) * (1.0 + torch.cos(math.pi * i / max(n, 1)))
    return torch.cat([warmup, cosine])


def linear_warmup_then_constant(start: float, end: float, warmup_steps: int, total_steps: int) -> torch.Tensor:
    """``np.linspace(start, end, warmup_steps)`` (endpoint included), then ``end`` until ``total_steps``.

    This is DINO's teacher-temperature schedule (``DINOLoss.__init__``) per step: with 0.04 → 0.07 over five
    steps the values are 0.04, 0.0475, 0.055, 0.0625, 0.07 (the last warm-up step already equals ``end``).

    Args:
        start: First value.
        end: Value at the last warm-up step and afterwards.
        warmup_steps: Length of the ramp, ``0 <= warmup_steps <= total_steps`` (0: constant ``end``).
        total_steps: Length of the schedule.

    Returns:
        Tensor of shape ``(total_steps,)``, dtype float64.
    """
    if total_steps < 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got {warmup_steps=} {total_steps=}")
    ramp = linspace_np(start, end, warmup_steps)
    rest = torch.full((total_steps - warmup_steps,), float(end), dtype=torch.float64)
    return torch.cat([ramp, rest])


def schedule_value(schedule: torch.Tensor, step: int) -> float:
    """Value of ``schedule`` at ``step`` as a Python float; steps past the end read the last value.

    Args:
        schedule: A 1-d schedule tensor of length ``>= 1``.
        step: Zero-based global optimisation step (``>= 0``).
    """
    if schedule.numel() == 0:
        raise ValueError("empty schedule")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return float(schedule[min(step, schedule.numel() - 1)])


def schedule_scalar(schedule: torch.Tensor, step: int) -> torch.Tensor:
    """:func:`schedule_value` as a 0-d float32 CPU tensor, for values that enter compiled code (a temperature).

    A Python float argument is a constant to a compiled graph (``compile: true`` compiles with
    ``dynamic=False``): every new value would compile the graph again. A tensor is an input, so one graph
    serves every step. The float32 value is the one the float would have become in a float32 operation
    (the same rounding), so eager results do not change.

    Args:
        schedule: A 1-d schedule tensor of length ``>= 1``.
        step: Zero-based global optimisation step (``>= 0``).
    """
    return torch.tensor(schedule_value(schedule, step), dtype=torch.float32)
