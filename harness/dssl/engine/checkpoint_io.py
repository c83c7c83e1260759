"""Checkpoint files that survive crashes and full disks: atomic writes, retried, failures that name the path.

:func:`save_atomic` never leaves a torn file at the destination: the data goes to ``<path>.tmp`` first and
is renamed over ``path`` only once it is whole and on disk, so a crash or a full disk mid-write leaves
the previous file intact (and the temporary file is removed, giving the space back).
:func:`write_with_retries` tries a failed write again a few times — space may be freed, a network file
system may come back — before it gives up with :class:`CheckpointWriteError`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dssl.errors import RunFailedError

#: Seconds waited before each new attempt at a failed write; after the last attempt the run fails.
RETRY_WAITS_S: tuple[float, ...] = (5.0, 30.0)


class CheckpointWriteError(RunFailedError):
    """A checkpoint could not be written, even after retries; the previous file at its path is intact."""


class _WriteRecorder:
    """A file object for ``torch.save`` that keeps the ``OSError`` of a failed write.

    torch reports a failed write as an opaque ``RuntimeError`` ("unexpected pos ..."); the file system's own
    error (``No space left on device``, ``Permission denied``) is what a user can act on.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._handle.flush()


def save_atomic(obj: Any, path: Path) -> Path:
    """``torch.save`` ``obj`` so that ``path`` is always whole: the old file or the new one, never a torn one.

    The data goes to ``<path>.tmp``, is flushed to disk, then renamed over ``path`` (atomic on POSIX), and the
    rename is made durable. A crash mid-write leaves only the temporary file torn, which resuming ignores.

    Raises:
        OSError: The file system refused the write (the temporary file is removed, ``path`` untouched).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            writer = _WriteRecorder(handle)
            try:
                torch.save(obj, writer)  # type: ignore[arg-type]
            except RuntimeError as exc:
                if writer.error is not None:
                    raise writer.error from exc
                raise
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every platform)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def write_with_retries(
    path: Path,
    write: Callable[[], Path],
    *,
    what: str = "checkpoint",
    notify: Callable[[str], None] | None = None,
    hint: str = "",
) -> Path:
    """Call ``write`` (an atomic writer of ``path``); after an ``OSError``, wait and try again.

    Args:
        path: The file ``write`` replaces, named in every message.
        write: Writes ``path`` atomically and returns it.
        what: What the file is, for messages.
        notify: Receives one line per failed attempt that will be retried.
        hint: Appended to the final error (e.g. how to resume the run).

    Returns:
        ``path``, once a write succeeded.

    Raises:
        CheckpointWriteError: Every attempt failed; names the path, the file system's error and whether the
            previous file is intact.
    """
    waits = tuple(RETRY_WAITS_S)
    for attempt, wait in enumerate((*waits, None), start=1):
        try:
            return write()
        except OSError as exc:
            reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else str(exc)
            kept = f"the previous {what} {path} is intact" if path.exists() else f"there is no earlier {what}"
            if wait is None:
                raise CheckpointWriteError(
                    f"cannot write the {what} {path} ({reason}; {attempt} attempts); {kept}{hint}"
                ) from exc
            if notify is not None:
                notify(f"writing the {what} {path} failed ({reason}); {kept}; trying again in {wait:g} s")
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
