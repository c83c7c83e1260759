"""Planning a grid: every cell resolved to its configuration, with the state of its runs in the experiment.

Every cell's configuration is resolved with :func:`dssl.api.resolve` (the precedence of ``dssl bench``)
before anything runs, so a bad cell stops the grid with a configuration error (exit code 2) up front.
A cell is identified by :meth:`dssl.config.RunConfig.fingerprint` (everything that changes the numbers),
stored on its MLflow run as the ``dssl.fingerprint`` tag: a cell whose fingerprint has a ``FINISHED`` run
in the experiment is done. A cell whose latest unfinished run (``RUNNING``, ``FAILED`` or ``KILLED``: a
crash, a kill, Ctrl-C) left a local ``checkpoints/last.pt`` is resumed from it in that same run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from dssl.errors import ConfigError, UsageError
from dssl.grid.spec import GridCell, GridSpec
from dssl.tracking.leaderboard import LeaderboardRow, search_all_runs
from dssl.validation import describe_validation_error

if TYPE_CHECKING:
    from dssl.config import RunConfig
    from dssl.host import PluginHost

#: Tag holding a cell's configuration fingerprint; a FINISHED run with it marks the cell done.
FINGERPRINT_TAG = "dssl.fingerprint"
#: Tag holding the grid name, on the parent run and on every child run.
GRID_TAG = "dssl.grid"
#: Tag naming the cell (``"<objective> / <backbone> / <dataset>"``) on child runs.
CELL_TAG = "dssl.grid.cell"
#: Tag naming the cell's objective label (e.g. ``cotap+oaf``) on child runs.
LABEL_TAG = "dssl.grid.objective"
#: Tag unique to one attempt at a cell, to find the run a (sub)process created.
ATTEMPT_TAG = "dssl.grid.attempt"

#: ``backbone.init`` of an ``also_evaluate_on`` cell until the cell it evaluates has trained: ``cell:<fingerprint>``.
CELL_INIT_PREFIX = "cell:"

CellStatus = Literal["pending", "done", "skipped", "finished", "failed"]


@dataclass
class PlannedCell:
    """A cell with its resolved configuration and what happened to it.

    Attributes:
        cell: The grid cell.
        config: Its resolved run configuration.
        fingerprint: ``config.fingerprint()`` (of an evaluation-only run for a ``checkpoints`` cell).
        status: ``done`` (a finished run exists; ``skipped`` once the grid ran), ``pending``, ``finished``
            (ran now) or ``failed``.
        run_id: The MLflow run of the cell (the earlier one when skipped).
        error: The error message of a failed cell.
        seconds: Wall time of the cell when it ran now.
        resume_run_id: An interrupted run of the cell, with a local checkpoint, that a pending cell continues.
    """

    cell: GridCell
    config: RunConfig
    fingerprint: str
    status: CellStatus = "pending"
    run_id: str | None = None
    error: str | None = None
    seconds: float | None = None
    resume_run_id: str | None = None

    @property
    def label(self) -> str | None:
        """The name of the weights an evaluation-only (``checkpoints``) cell evaluates; ``None`` for training."""
        return self.cell.objective.key if self.cell.checkpoint is not None else None

    @property
    def title(self) -> str:
        """``[3] dino / vit_t16 / embedded seed 1``: the cell's number, label and seed."""
        return f"[{self.cell.index + 1}] {self.cell.label} seed {self.cell.seed}"

    @property
    def report(self) -> str:
        """One line about the outcome, e.g. ``skipped (done in run 1a2b...)``."""
        if self.status in ("done", "skipped"):
            return f"{self.status} (done in run {self.run_id})"
        if self.status == "finished":
            return f"finished in {self.seconds or 0:.0f} s (run {self.run_id})"
        if self.status == "failed":
            return f"FAILED: {self.error}" + (f" (run {self.run_id})" if self.run_id else "")
        if self.status == "pending" and self.resume_run_id:
            return f"pending (resumes run {self.resume_run_id})"
        return self.status


@dataclass
class GridOutcome:
    """What :func:`run_grid` did.

    Attributes:
        name: The grid name.
        parent_run_id: The grid's MLflow run (``None`` for a dry run).
        cells: Every cell, in grid order.
        rows: Leaderboard rows (objective = the objective's label; train_dataset = the dataset's label).
    """

    name: str
    parent_run_id: str | None
    cells: list[PlannedCell]
    rows: list[LeaderboardRow] = field(default_factory=list)

    @property
    def failed(self) -> list[PlannedCell]:
        """The cells that failed."""
        return [c for c in self.cells if c.status == "failed"]


def plan_grid(
    spec: GridSpec,
    *,
    host: PluginHost,
    tracking_uri: str,
    experiment: str,
    data_root: str | None = None,
    source: str | Path | None = None,
) -> list[PlannedCell]:
    """Resolve every cell and mark the ones with a finished run in the experiment as ``done``.

    Args:
        spec: The validated grid.
        host: Plugin host used to resolve components.
        tracking_uri: MLflow tracking URI.
        experiment: MLflow experiment of the grid.
        data_root: Folder of the real datasets (not part of the fingerprint).
        source: The grid file, named in error messages.

    Raises:
        ConfigError: A cell does not resolve (unknown component, bad option); names the cell.
    """
    from dssl.api import resolve

    planned: list[PlannedCell] = []
    for cell in spec.cells():
        overrides: dict[str, Any] = cell.overrides() | {
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "run_name": cell.run_name,
            "data_root": data_root,
        }
        sets = cell.sets
        if cell.evaluates is not None:
            # The weights are the trained cell's: named by its fingerprint until it has a run (see runner); last,
            # over any backbone.init the grid sets for the training.
            sets = (*sets, f"backbone.init={CELL_INIT_PREFIX}{planned[cell.evaluates].fingerprint}")
        overrides["evaluators"] = list(cell.evaluators)
        try:
            config = resolve(cell.base, host=host, sets=sets, **overrides)
        except (UsageError, ValidationError) as exc:
            where = f"grid file {source}: " if source else ""
            detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            detail = detail.replace("Value error, ", "").lstrip(": ")
            raise ConfigError(f"{where}cell {cell.label} seed {cell.seed}: {detail}") from None
        fingerprint = config.fingerprint(trained=cell.checkpoint is None)
        planned.append(PlannedCell(cell=cell, config=config, fingerprint=fingerprint))
    finished = _finished_runs_by_fingerprint(tracking_uri, experiment, {p.fingerprint for p in planned})
    for item in planned:
        if item.fingerprint in finished:
            item.status, item.run_id = "done", finished[item.fingerprint]
    pending = {p.fingerprint for p in planned if p.status == "pending"}
    resumable = _resumable_runs_by_fingerprint(tracking_uri, experiment, pending)
    for item in planned:
        if item.status == "pending":
            item.resume_run_id = resumable.get(item.fingerprint)
    return planned


def store_client(tracking_uri: str, *, create: bool) -> Any:
    """An MLflow client, or ``None`` when the SQLite store does not exist and must not be created."""
    from dssl.tracking.mlflow_tracker import sqlite_path

    db = sqlite_path(tracking_uri)
    if not create and db is not None and not db.exists():
        return None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def search_experiment(client: Any, experiment: str, filter_string: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return []
    return list(search_all_runs(client, [found.experiment_id], filter_string, ["attributes.start_time DESC"]))


def _finished_runs_by_fingerprint(tracking_uri: str, experiment: str, fingerprints: set[str]) -> dict[str, str]:
    """Fingerprint -> id of its latest FINISHED run in the experiment (only for the given fingerprints)."""
    client = store_client(tracking_uri, create=False)
    if client is None or not fingerprints:
        return {}
    # One query for the experiment; fingerprints are matched here (filter strings have no IN for tags).
    runs = search_experiment(client, experiment, "attributes.status = 'FINISHED'")
    latest: dict[str, str] = {}
    for run in runs:  # newest first
        fingerprint = run.data.tags.get(FINGERPRINT_TAG)
        if fingerprint in fingerprints and fingerprint not in latest:
            latest[fingerprint] = run.info.run_id
    return latest


def _resumable_runs_by_fingerprint(tracking_uri: str, experiment: str, fingerprints: set[str]) -> dict[str, str]:
    """Fingerprint -> id of its latest interrupted run that left a local checkpoint to resume from.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: MLflow experiment of the grid.
        fingerprints: The cells to look for (those without a finished run).

    Returns:
        Only runs whose status is ``RUNNING``, ``FAILED`` or ``KILLED``, whose folder (tag
        ``dssl.output_dir``) holds ``checkpoints/last.pt`` and no ``results.json``.
    """
    from dssl.tracking.mlflow_tracker import OUTPUT_DIR_TAG

    client = store_client(tracking_uri, create=False)
    if client is None or not fingerprints:
        return {}
    found: dict[str, str] = {}
    for run in search_experiment(client, experiment, ""):  # newest first
        fingerprint = run.data.tags.get(FINGERPRINT_TAG)
        if fingerprint not in fingerprints or fingerprint in found:
            continue
        if run.info.status not in ("RUNNING", "FAILED", "KILLED"):
            continue
        folder = run.data.tags.get(OUTPUT_DIR_TAG)
        if not folder:
            continue
        if (Path(folder) / "checkpoints" / "last.pt").is_file() and not (Path(folder) / "results.json").exists():
            found[fingerprint] = run.info.run_id
    return found


def bind_trained_weights(item: PlannedCell, trained: PlannedCell, *, tracking_uri: str) -> bool:
    """Point an ``also_evaluate_on`` cell at the weights the cell it evaluates trained.

    The weights are the trained run's local ``checkpoints/backbone.pt`` when its folder (tag
    ``dssl.output_dir``) is on this machine, else ``runs:/RUN_ID``. The plan's fingerprint of ``item`` (which
    names the trained cell's fingerprint) is kept: it identifies the cell in the experiment.

    Args:
        item: The pending evaluation-only cell (``item.cell.evaluates`` is ``trained``'s index).
        trained: The cell whose weights it evaluates, after it ran (or was skipped as done).
        tracking_uri: MLflow tracking URI of the grid.

    Returns:
        ``True`` when bound; ``False`` when ``trained`` has no finished run (``item`` is then marked failed).
    """
    from dssl.tracking.mlflow_tracker import OUTPUT_DIR_TAG

    if trained.status not in ("finished", "skipped", "done") or trained.run_id is None:
        item.status = "failed"
        item.error = f"the cell it evaluates, {trained.title}, has no finished run"
        return False
    init = f"runs:/{trained.run_id}"
    client = store_client(tracking_uri, create=False)
    if client is not None:
        folder = client.get_run(trained.run_id).data.tags.get(OUTPUT_DIR_TAG)
        if folder and (Path(folder) / "checkpoints" / "backbone.pt").is_file():
            init = str(Path(folder) / "checkpoints" / "backbone.pt")
    backbone = item.config.backbone.model_copy(update={"init": init})
    item.config = item.config.model_copy(update={"backbone": backbone})
    return True


def render_dry_run(cells: Sequence[PlannedCell], name: str) -> str:
    """The plan of a grid as text: one line per cell with its fingerprint and status."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"grid {escape(name)}: {len(cells)} cells", title_justify="left")
    for column in ("#", "cell", "seed", "fingerprint", "status"):
        table.add_column(column)
    for item in cells:
        status = f"done ({item.run_id})" if item.status == "done" else item.report
        table.add_row(str(item.cell.index + 1), escape(item.cell.label), str(item.cell.seed), item.fingerprint, status)
    buffer = io.StringIO()
    Console(file=buffer, width=160, color_system=None, force_terminal=False, highlight=False).print(table)
    return buffer.getvalue().rstrip("\n")
