"""Where a training step spends its time: a small phase profiler that :class:`~dssl.engine.trainer.Trainer` feeds.

The trainer calls :meth:`StepProfiler.begin_step` before it fetches a batch and :meth:`StepProfiler.mark`
at the end of each phase; every mark attributes the time since the previous mark (or since the step began)
to the named phase, so the phases of a step add up exactly to its wall time. On CUDA each boundary
synchronises the device first, so that a phase is charged with the kernels it launched rather than with
those of an earlier phase (this slows the profiled steps slightly; the profile is a diagnosis, not a
throughput figure). The first ``warmup`` steps are run but not recorded; after ``steps`` recorded steps
:attr:`StepProfiler.finished` is true and the trainer stops.

Example:
    >>> profiler = StepProfiler(torch.device("cpu"), steps=4)          # doctest: +SKIP
    >>> trainer = Trainer(objective, optim, device=device, profiler=profiler)  # doctest: +SKIP
    >>> trainer.fit(loader)                                             # doctest: +SKIP
    >>> profiler.report().rows()                                        # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

#: The phases of one training step, in the order the trainer marks them.
PHASES: tuple[str, ...] = ("data", "forward", "backward", "optimizer", "logging")


@dataclass
class PhaseReport:
    """Recorded phase times of the profiled steps.

    Attributes:
        steps: Steps recorded (warm-up excluded).
        phase_seconds: Total seconds per phase over the recorded steps, in :data:`PHASES` order.
        total_seconds: Total wall time of the recorded steps.
    """

    steps: int
    phase_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def ms_per_step(self) -> dict[str, float]:
        """Milliseconds per recorded step of each phase."""
        n = max(self.steps, 1)
        return {name: 1000.0 * seconds / n for name, seconds in self.phase_seconds.items()}

    def rows(self) -> list[tuple[str, float, float]]:
        """``(phase, ms/step, % of the step)`` for every phase, then ``("total", ms/step, 100)``."""
        per_step = self.ms_per_step()
        total_ms = 1000.0 * self.total_seconds / max(self.steps, 1)
        rows = [(name, ms, 100.0 * ms / total_ms if total_ms > 0 else 0.0) for name, ms in per_step.items()]
        rows.append(("total", total_ms, 100.0))
        return rows

    def table(self, title: str = "training step profile") -> Any:
        """The report as a ``rich.table.Table``."""
        from rich.table import Table

        table = Table(title=f"{title} ({self.steps} steps)", title_justify="left")
        table.add_column("phase")
        table.add_column("ms/step", justify="right")
        table.add_column("%", justify="right")
        for name, ms, share in self.rows():
            table.add_row(name, f"{ms:.2f}", f"{share:.1f}")
        return table


class StepProfiler:
    """Accumulates the time of each phase of the training steps the trainer reports.

    Args:
        device: The training device; on CUDA every phase boundary calls ``torch.cuda.synchronize``.
        steps: Steps to record after the warm-up; then :attr:`finished` becomes true.
        warmup: Steps run first and not recorded (lazy initialisation, allocator and autotuning warm-up).

    Raises:
        ValueError: ``steps < 1`` or ``warmup < 0``.
    """

    def __init__(self, device: torch.device | str, *, steps: int, warmup: int = 2) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.device = torch.device(device)
        self.steps = steps
        self.warmup = warmup
        self._sync = self.device.type == "cuda"
        self._seen = 0
        self._recorded = 0
        self._recording = False
        self._step_start = 0.0
        self._last = 0.0
        self._phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._total = 0.0

    @property
    def steps_needed(self) -> int:
        """Warm-up plus recorded steps: how many steps the trainer must run."""
        return self.warmup + self.steps

    @property
    def finished(self) -> bool:
        """All ``steps`` steps have been recorded."""
        return self._recorded >= self.steps

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def begin_step(self) -> None:
        """Start timing a step (called before its batch is fetched)."""
        self._recording = self._seen >= self.warmup and not self.finished
        self._seen += 1
        if self._recording:
            self._step_start = self._last = self._now()

    def mark(self, phase: str) -> None:
        """Charge the time since the previous boundary of this step to ``phase``.

        Args:
            phase: One of :data:`PHASES` (other names are accepted and reported after them).
        """
        if not self._recording:
            return
        now = self._now()
        self._phases[phase] = self._phases.get(phase, 0.0) + (now - self._last)
        self._last = now

    def end_step(self) -> None:
        """Close the step: its time since :meth:`begin_step` counts towards the total."""
        if not self._recording:
            return
        self._total += self._last - self._step_start
        self._recorded += 1
        self._recording = False

    def report(self) -> PhaseReport:
        """The recorded times so far."""
        return PhaseReport(steps=self._recorded, phase_seconds=dict(self._phases), total_seconds=self._total)
