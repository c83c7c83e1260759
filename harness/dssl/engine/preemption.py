"""Preemption signals: stop a run at a safe point, with its checkpoint written, instead of dying mid-step.

A cluster that preempts a job, or whose time limit is near, sends a signal first (SLURM: SIGTERM, or
the one set with ``--signal``, e.g. ``USR1@90``) and kills the job a little later. While a
:class:`PreemptionGuard` is active, those signals only set a flag: the trainer finishes its current
step, writes a full checkpoint and raises :class:`~dssl.errors.PreemptedError` (exit status 75,
"requeue"). Outside training (evaluation) nothing is worth finishing, so a signal raises at once.
SIGINT (Ctrl-C) is never taken over: it stays ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, TracebackType
from typing import Any

from dssl.errors import ConfigError, PreemptedError

#: Signals a run may treat as preemption (SIGINT stays Ctrl-C; SIGKILL/SIGSTOP cannot be caught).
PREEMPTION_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP")


def parse_signals(names: Sequence[str], *, key: str = "preempt_signals") -> list[str]:
    """Normalise signal names (``"term"``, ``"USR1"``, ``"SIGUSR1"``) to ``SIG*`` names.

    Raises:
        ConfigError: A name that is not one of :data:`PREEMPTION_SIGNALS`.
    """
    normalised = []
    for name in names:
        text = str(name).strip().upper()
        text = text if text.startswith("SIG") else f"SIG{text}"
        if text not in PREEMPTION_SIGNALS:
            raise ConfigError(f"{key}: unknown signal {name!r}; accepted: {', '.join(PREEMPTION_SIGNALS)}")
        if text not in normalised:
            normalised.append(text)
    return normalised


def leave_preemption_to_the_main_process(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader: its worker processes ignore the preemption signals.

    A scheduler signals every process of a job (SLURM's preemption, ``scancel``), loader workers included; a
    worker killed by the signal fails the run with a DataLoader error before the trainer can finish its step and
    write its checkpoint. The workers end with the loader (or when the main process dies) instead. Use it through
    :func:`preemption_safe_worker_init`, which also ends such workers when the interpreter exits.
    """
    for name in PREEMPTION_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_IGN)


def preemption_safe_worker_init(num_workers: int) -> Callable[[int], None] | None:
    """The ``worker_init_fn`` of a DataLoader with ``num_workers`` worker processes (``None`` without workers).

    Its workers ignore the preemption signals (:func:`leave_preemption_to_the_main_process`), and so also the
    SIGTERM with which ``multiprocessing`` ends its daemonic children when the interpreter exits, before it waits
    for them: workers still alive then (a loader whose iterator outlived its run, e.g. held by the traceback of a
    failed run) would keep the process from ever exiting. The first call therefore installs an exit handler that
    kills the workers left over (:func:`_end_workers_left_at_exit`).
    """
    if num_workers <= 0:
        return None
    _install_exit_handler()
    return leave_preemption_to_the_main_process


@functools.cache
def _install_exit_handler() -> None:
    import atexit
    import multiprocessing.util  # noqa: F401  registers multiprocessing's exit handler first: ours then runs before it

    atexit.register(_end_workers_left_at_exit)


def _end_workers_left_at_exit() -> None:
    """Kill the daemonic children still alive at exit (loader workers, which ignore SIGTERM)."""
    import multiprocessing

    children = [child for child in multiprocessing.active_children() if child.daemon]
    if not children:
        return
    # A loader whose workers are still registered raises from its SIGCHLD handler when one dies: not at exit.
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        with contextlib.suppress(Exception):
            child.kill()
            child.join(timeout=5)


class PreemptionGuard:
    """Installs handlers for preemption signals for the duration of a ``with`` block (main thread only).

    Args:
        signals: Signal names (see :func:`parse_signals`); empty: the guard does nothing.

    Attributes:
        requested: The name of the first preemption signal received, else ``None``.

    Example:
        >>> with PreemptionGuard(["SIGTERM"]) as guard:  # doctest: +SKIP
        ...     trainer = Trainer(..., stop_requested=guard.poll)
        ...     with guard.interruptible():
        ...         evaluate()
    """

    def __init__(self, signals: Sequence[str]) -> None:
        self.signals = parse_signals(signals)
        self.requested: str | None = None
        self._interruptible = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> PreemptionGuard:
        # Python delivers signals to the main thread only; elsewhere (a grid's worker thread) keep the defaults.
        if threading.current_thread() is threading.main_thread():
            for name in self.signals:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signal.Signals(signum).name
        if self._interruptible:
            self._interruptible = False  # a second signal must not interrupt the unwinding
            raise PreemptedError(self.requested)

    def poll(self) -> str | None:
        """The signal that asked the run to stop, if any (the trainer calls this after every step)."""
        return self.requested

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block a preemption signal raises :class:`PreemptedError` at once (also one already received)."""
        if self.requested is not None:
            raise PreemptedError(self.requested)
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False
