"""Exceptions that the CLI maps to exit codes: 2 for usage/config errors, 1 for a failed run, 75 for a preempted one."""

from __future__ import annotations

from pathlib import Path

#: Exit status of a run stopped by a preemption signal after writing its checkpoint: ``EX_TEMPFAIL`` of
#: ``sysexits.h`` ("temporary failure, the user is invited to retry"), so a job script can requeue on it.
REQUEUE_EXIT_CODE = 75


class DsslError(Exception):
    """Base class of dssl's own errors."""

    exit_code = 1
    #: Word the CLI prints before the message.
    label = "error"


class UsageError(DsslError):
    """Bad input from the user: unknown key or component, wrong type, malformed file (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value or file is invalid; the message names the key and what is accepted."""


class UnknownComponentError(UsageError):
    """No component of that kind and name is registered."""


class PluginError(DsslError):
    """A plugin failed to load or conflicts with another plugin."""

    exit_code = 2


class NameCollisionError(PluginError):
    """Two distributions register a component of the same kind and name.

    Attributes:
        kind: The component kind.
        name: The name both register.
        first: The distribution that registered it first (it keeps the name).
        second: The distribution whose registration was refused (it fails to load).
    """

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        super().__init__(f"{kind} name '{name}' is registered twice: by {first} and by {second}")
        self.kind, self.name, self.first, self.second = kind, name, first, second


class RunFailedError(DsslError):
    """A run started but did not finish (exit code 1)."""

    exit_code = 1


class BadImageError(ConfigError):
    """An image file of a dataset cannot be decoded (truncated, empty, not an image).

    Attributes:
        path: The file (``None`` when only the message survived a DataLoader worker).
        reason: What the decoder said.
    """

    def __init__(self, path: Path | str, reason: str | None = None) -> None:
        if reason is None:
            # A DataLoader worker re-raises an error in the main process as ``type(error)(its traceback text)``:
            # keep the original message, not the traceback.
            lines = [line for line in str(path).splitlines() if f"{type(self).__name__}: " in line]
            message = lines[-1].split(f"{type(self).__name__}: ", 1)[1] if lines else str(path)
            self.path: Path | None = None
            self.reason = message
            super().__init__(message)
            return
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[BadImageError], tuple[str, str | None]]:
        return type(self), (str(self.path), self.reason) if self.path is not None else (self.reason, None)


class PreemptedError(DsslError):
    """A preemption signal stopped the run after its checkpoint was written (exit code 75: requeue).

    Attributes:
        signal_name: The signal that asked the run to stop, e.g. ``"SIGTERM"``.
        step: Training steps the checkpoint holds (``None`` when no checkpoint was written).
        resume_target: What ``dssl bench --resume`` takes to continue the run (its MLflow run id, or its folder
            when it was not tracked), once known.
    """

    exit_code = REQUEUE_EXIT_CODE
    label = "preempted"

    def __init__(self, signal_name: str, *, step: int | None = None, resume_target: str | None = None) -> None:
        self.signal_name = signal_name
        self.step = step
        self.resume_target = resume_target
        super().__init__(signal_name)

    @property
    def where(self) -> str:
        """``"SIGTERM at step 12"``, or the signal alone when no checkpoint was written."""
        return f"{self.signal_name} at step {self.step}" if self.step is not None else self.signal_name

    def __str__(self) -> str:
        text = f"stopped by {self.where}"
        if self.resume_target:
            text += f"; checkpoint written, continue with: dssl bench --resume {self.resume_target}"
        return text

    def __reduce__(self) -> tuple[type[PreemptedError], tuple[str], dict[str, object]]:
        return type(self), (self.signal_name,), dict(self.__dict__)
