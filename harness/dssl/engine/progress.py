"""Progress display: a rich bar on a terminal, plain periodic lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any


class TrainingProgress:
    """Shows step, loss, images/s and ETA.

    Args:
        total: Number of steps.
        description: Label of the bar.
        every: Steps between plain lines when the output is not a terminal.
        console: A ``rich.console.Console``; default: a stderr console. A quiet console shows nothing.
    """

    def __init__(self, total: int, *, description: str = "train", every: int = 10, console: Any = None) -> None:
        from rich.console import Console

        self.total = total
        self.description = description
        self.every = max(1, every)
        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_terminal
        self._start = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        self._last: dict[str, float] = {}

    def __enter__(self) -> TrainingProgress:
        self._start = time.perf_counter()
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def update(self, step: int, metrics: Mapping[str, float], images_per_second: float | None) -> None:
        """Report that ``step`` (1-based count of finished steps) is done."""
        self._last = dict(metrics)
        status = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if images_per_second is not None:
            status += f"  {images_per_second:.1f} img/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=status)
        elif not self.console.quiet and (step % self.every == 0 or step == self.total):
            elapsed = time.perf_counter() - self._start
            eta = elapsed / step * (self.total - step) if step else float("nan")
            print(
                f"{self.description} step {step}/{self.total}  {status}  eta {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)


class StageProgress:
    """``progress(stage, done, total)`` callbacks of evaluators shown as bars (terminal) or one line per stage.

    Args:
        label: Prefix of every stage, e.g. the evaluator name.
        console: A ``rich.console.Console``; default: a stderr console. A quiet console shows nothing.
    """

    def __init__(self, label: str, console: Any = None) -> None:
        from rich.console import Console

        self.label = label
        self.console = console or Console(stderr=True)
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> StageProgress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.__enter__()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        name = f"{self.label} {stage}"
        if self._progress is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._progress.add_task(name, total=total)
            self._progress.update(self._tasks[stage], completed=done, total=total)
            return
        self._started.setdefault(stage, time.perf_counter())
        if done >= total and not self.console.quiet:
            seconds = time.perf_counter() - self._started[stage]
            print(f"{name}: {total}/{total} in {seconds:.1f}s", file=sys.stderr, flush=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
