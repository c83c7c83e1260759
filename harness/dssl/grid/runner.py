"""Run a grid: resolve every cell, skip the finished ones, run the rest as child runs, end with a leaderboard.

Every cell's configuration is resolved with :func:`dssl.api.resolve` (the precedence of ``dssl bench``)
before anything runs, so a bad cell stops the grid with a configuration error (exit code 2) up front.
A cell is identified by :meth:`dssl.config.RunConfig.fingerprint` (everything that changes the numbers),
stored on its MLflow run as the ``dssl.fingerprint`` tag: a cell whose fingerprint has a ``FINISHED`` run
in the experiment is skipped. A cell whose latest unfinished run (``RUNNING``, ``FAILED`` or ``KILLED``:
a crash, a kill, Ctrl-C) left a local ``checkpoints/last.pt`` is resumed from it in that same run
(:func:`dssl.runner.resume_bench`), which moves under the new grid run. The grid is one MLflow parent
run (named after the grid, tag ``dssl.grid``) with one child run per cell. A failing cell is recorded as a
``FAILED`` child run (tag ``dssl.error``) and the grid goes on; the grid then ends with
:class:`~dssl.errors.RunFailedError`.

The grid's evaluators replace a preset's: evaluator options that a preset gives for evaluators the grid
does not run (e.g. STELLAR's ``gpu`` preset configures ``knn`` and ``linear_cls``) are left out.

Cells run in this process one after another, or ``parallel`` at a time, each in a fresh (spawned) Python
process that runs the very configuration resolved here (its output goes to
``<output_dir>/grid-logs/<grid>/<cell>.log``) and nests its run through ``$DSSL_PARENT_RUN_ID``.

Preemption: a cell run in this process that is preempted stops the grid too (the parent run ends KILLED,
exit status 75); rerunning the grid resumes the cell. A submitit job follows submitit's checkpointing
protocol (:class:`SubmititCell`): a preempted or timed-out job writes its checkpoint, is requeued, and the
requeued job resumes the cell in the same MLflow run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from dssl.errors import REQUEUE_EXIT_CODE, ConfigError, PreemptedError, RunFailedError, UsageError
from dssl.grid.spec import GridCell, GridSpec, LauncherSpec
from dssl.tracking.leaderboard import LeaderboardRow, search_all_runs
from dssl.validation import describe_validation_error

if TYPE_CHECKING:
    from rich.console import Console

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
#: Artifacts of the parent run.
LEADERBOARD_MD = "grid_leaderboard.md"
LEADERBOARD_JSON = "grid_leaderboard.json"

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


# -- planning ---------------------------------------------------------------------------------------------


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

    planned = []
    for cell in spec.cells():
        overrides: dict[str, Any] = cell.overrides() | {
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "run_name": cell.run_name,
            "data_root": data_root,
        }
        overrides["evaluators"] = list(cell.evaluators)
        try:
            config = resolve(cell.base, host=host, sets=cell.sets, **overrides)
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


def _client(tracking_uri: str, *, create: bool) -> Any:
    """An MLflow client, or ``None`` when the SQLite store does not exist and must not be created."""
    from dssl.tracking.mlflow_tracker import sqlite_path

    db = sqlite_path(tracking_uri)
    if not create and db is not None and not db.exists():
        return None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _search(client: Any, experiment: str, filter_string: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return []
    return list(search_all_runs(client, [found.experiment_id], filter_string, ["attributes.start_time DESC"]))


def _finished_runs_by_fingerprint(tracking_uri: str, experiment: str, fingerprints: set[str]) -> dict[str, str]:
    """Fingerprint -> id of its latest FINISHED run in the experiment (only for the given fingerprints)."""
    client = _client(tracking_uri, create=False)
    if client is None or not fingerprints:
        return {}
    # One query for the experiment; fingerprints are matched here (filter strings have no IN for tags).
    runs = _search(client, experiment, "attributes.status = 'FINISHED'")
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

    client = _client(tracking_uri, create=False)
    if client is None or not fingerprints:
        return {}
    found: dict[str, str] = {}
    for run in _search(client, experiment, ""):  # newest first
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


# -- running ----------------------------------------------------------------------------------------------


def run_grid(
    spec: GridSpec,
    *,
    host: PluginHost,
    tracking_uri: str,
    experiment: str,
    data_root: str | None = None,
    parallel: int = 1,
    source: str | Path | None = None,
    disabled: Sequence[str] = (),
    strict: bool = False,
    console: Console | None = None,
    out: Console | None = None,
    launcher: LauncherSpec | None = None,
) -> GridOutcome:
    """Run the grid's pending cells as child runs of one parent run and log the grid leaderboard.

    Args:
        spec: The validated grid (its ``name`` is set).
        host: Plugin host.
        tracking_uri: MLflow tracking URI.
        experiment: MLflow experiment.
        data_root: Folder of the real datasets.
        parallel: Cells run at once; above 1 each cell runs in its own spawned process.
        source: The grid file, named in error messages.
        disabled: Plugin distributions to skip in the cells' processes (``--disable-plugin``).
        strict: Fail on any plugin that does not load, in the cells' processes (``--strict-plugins``).
        console: Where progress goes (stderr by default).
        out: Where the leaderboard table goes (stdout by default).
        launcher: Where the cells run; default: the grid file's ``launcher`` (local).

    Returns:
        The outcome; raises instead when a cell failed.

    Raises:
        ConfigError: A cell does not resolve (nothing is run then).
        RunFailedError: At least one cell failed (after all cells ran and the leaderboard was logged).
    """
    from rich.console import Console
    from rich.markup import escape

    from dssl.tracking.mlflow_tracker import MlflowTracker, nested_runs

    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1 (got {parallel})")
    from dssl.tracking.mlflow_tracker import check_tracking_access

    console = console or Console(stderr=True)
    out = out or Console(width=max(100, shutil.get_terminal_size((120, 24)).columns))
    name = spec.name or "grid"
    check_tracking_access(tracking_uri)  # a refused password is a usage error before any cell runs
    cells = plan_grid(
        spec, host=host, tracking_uri=tracking_uri, experiment=experiment, data_root=data_root, source=source
    )
    pending = [c for c in cells if c.status == "pending"]
    console.print(
        f"[bold]dssl grid[/] {name}: {len(cells)} cells, {len(cells) - len(pending)} done, {len(pending)} to run"
        + (f", {parallel} at a time" if parallel > 1 and pending else "")
    )
    for item in cells:
        if item.status == "done":
            item.status = "skipped"
            console.print(escape(f"  {_cell_title(item)}: {item.report}"), soft_wrap=True)

    with nested_runs(None):  # the grid's own run is top-level, whatever the environment says
        parent = MlflowTracker(tracking_uri=tracking_uri, experiment=experiment, run_name=name, tags={GRID_TAG: name})
    outcome = GridOutcome(name=name, parent_run_id=None, cells=cells)
    with parent:
        outcome.parent_run_id = parent.run_id
        parent.log_params(
            {
                "grid": name,
                "cells": len(cells),
                "objectives": [e.key for e in spec.objectives],
                "checkpoints": [e.label for e in spec.checkpoints],
                "backbones": [e.key for e in spec.backbones],
                "datasets": [e.key for e in spec.datasets],
                "evaluators": spec.evaluators,
                "seeds": spec.seeds,
            }
        )
        parent.log_dict(spec.model_dump(mode="json", exclude_none=True), "grid.yaml")
        launcher = launcher or spec.launcher
        if launcher.name == "submitit":
            runner = functools.partial(_run_submitit, launcher=launcher)
            # Jobs queue on the cluster: submit every cell at once unless --parallel limits it.
            parallel = parallel if parallel > 1 else max(1, len(pending))
        else:
            runner = _run_spawned if parallel > 1 else _run_in_process
        plugins = {"disabled": tuple(disabled), "strict": strict}
        execute = _cell_executor(runner, parent.run_id, name, host, tracking_uri, experiment, plugins, console)
        if parallel > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dssl-grid") as pool:
                list(pool.map(lambda item: execute(item, parallel), pending))
        else:
            for item in pending:
                execute(item, 1)

        outcome.rows = grid_rows(cells, tracking_uri=tracking_uri)
        counts = {s: sum(c.status == s for c in cells) for s in ("finished", "skipped", "failed")}
        parent.set_tags({f"dssl.grid.{k}": str(v) for k, v in counts.items()})
        parent.log_dict({"grid": name, "rows": [_row_json(r) for r in outcome.rows]}, LEADERBOARD_JSON)
        grid_markdown = render_grid_markdown(outcome)
        parent.log_text(grid_markdown, LEADERBOARD_MD)
        parent.set_description(_grid_description(spec, grid_markdown))
        print_grid(outcome, out)
        from dssl.tracking.browse import log_leaderboard
        from dssl.tracking.leaderboard import collect_rows

        board = log_leaderboard(
            tracking_uri, experiment, collect_rows(tracking_uri=tracking_uri, experiment=experiment)
        )
        console.print(escape(f"leaderboard of experiment {experiment}: run {board} (dssl leaderboard --log)"))
        if outcome.failed:
            listed = "; ".join(f"{_cell_title(c)}: {c.error}" for c in outcome.failed)
            raise RunFailedError(f"{len(outcome.failed)} of {len(cells)} grid cells failed: {listed}")
    return outcome


def _grid_description(spec: GridSpec, markdown: str) -> str:
    """The grid run's description: the grid file's own ``description``, then its leaderboard (as far as it fits)."""
    from dssl.tracking.browse import fit_description

    head = f"**Grid {spec.name}**" + (f": {spec.description.strip()}" if spec.description else "")
    body = markdown.split("\n", 1)[1] if markdown.startswith("# ") else markdown  # its title is the head
    return fit_description(head, body.replace("\n## ", "\n### "), f"(the whole table: {LEADERBOARD_MD})")


def _cell_title(item: PlannedCell) -> str:
    return f"[{item.cell.index + 1}] {item.cell.label} seed {item.cell.seed}"


def _cell_executor(
    runner: Callable[..., None],
    parent_run_id: str,
    grid: str,
    host: PluginHost,
    tracking_uri: str,
    experiment: str,
    plugins: Mapping[str, Any],
    console: Console,
) -> Callable[[PlannedCell, int], None]:
    """A function that runs one cell with ``runner`` and records its outcome (never raises but Ctrl-C)."""
    from rich.markup import escape

    def execute(item: PlannedCell, parallel: int) -> None:
        tags = {
            GRID_TAG: grid,
            FINGERPRINT_TAG: item.fingerprint,
            CELL_TAG: item.cell.label,
            LABEL_TAG: item.cell.objective.key,
            ATTEMPT_TAG: uuid.uuid4().hex,
        }
        if item.resume_run_id:
            _adopt(tracking_uri, item.resume_run_id, parent_run_id, tags)
            doing = f"resuming run {item.resume_run_id}"
        else:
            doing = "running"
        console.print(escape(f"  {_cell_title(item)}: {doing} ({item.fingerprint})"), soft_wrap=True)
        started = time.perf_counter()
        try:
            runner(item, parent_run_id=parent_run_id, tags=tags, host=host, plugins=plugins, parallel=parallel)
            error: BaseException | None = None
        except PreemptedError:
            raise  # this process was preempted: the grid stops too, and its rerun resumes the cell
        except Exception as exc:
            error = exc
        item.seconds = time.perf_counter() - started
        run = _attempt_run(tracking_uri, experiment, tags[ATTEMPT_TAG])
        if error is None and run is not None and run.info.status == "FINISHED":
            item.status, item.run_id = "finished", run.info.run_id
        else:
            item.status = "failed"
            if error is None:
                error = RunFailedError("the run did not finish" if run is not None else "no run was logged")
            item.error = _error_text(error)
            if run is None:
                item.run_id = _record_failure(item, error, parent_run_id=parent_run_id, tags=tags)
            else:
                item.run_id = run.info.run_id
                if run.info.status == "FINISHED":  # finished, yet the process failed afterwards
                    _mark_failed(tracking_uri, run.info.run_id, item.error)
        console.print(escape(f"  {_cell_title(item)}: {item.report}"), soft_wrap=True)

    return execute


def _adopt(tracking_uri: str, run_id: str, parent_run_id: str, tags: Mapping[str, str]) -> None:
    """Move an interrupted run of a cell under this grid's run, with this attempt's tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in {**tags, "mlflow.parentRunId": parent_run_id}.items():
        client.set_tag(run_id, key, value)


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.removesuffix(" (use --debug for the traceback)")


def _run_in_process(
    item: PlannedCell,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    host: PluginHost,
    **_: Any,
) -> None:
    from dssl.runner import resume_bench, run_bench, run_eval
    from dssl.tracking.mlflow_tracker import nested_runs

    if item.resume_run_id:
        resume_bench(item.resume_run_id, host=host, tracking_uri=item.config.tracking.uri)
        return
    with nested_runs(parent_run_id, tags):
        if item.label is not None:
            run_eval(item.config, host=host, label=item.label)
        else:
            run_bench(item.config, host=host)


def _child_env(parent_run_id: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Environment that makes a cell run in another process a child of the grid's run, with the cell's tags."""
    from dssl.tracking.mlflow_tracker import PARENT_RUN_ENV, RUN_TAGS_ENV

    return {PARENT_RUN_ENV: parent_run_id, RUN_TAGS_ENV: json.dumps(dict(tags))}


def _run_spawned(
    item: PlannedCell,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    plugins: Mapping[str, Any],
    parallel: int,
    **_: Any,
) -> None:
    import multiprocessing

    log_dir = Path(item.config.output_dir) / "grid-logs" / str(tags[GRID_TAG])
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{item.cell.index + 1:03d}-{item.cell.run_name}.log"
    env = _child_env(parent_run_id, tags)
    if "OMP_NUM_THREADS" not in os.environ:
        # N trainings on one machine: share the cores instead of each taking all of them.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    with tempfile.TemporaryDirectory(prefix="dssl-grid-") as tmp:
        error_path = Path(tmp) / "error.txt"
        process = multiprocessing.get_context("spawn").Process(
            target=_cell_worker,
            args=(
                item.config.to_dict(),
                env,
                str(log_path),
                dict(plugins),
                str(error_path),
                item.resume_run_id,
                item.label,
            ),
            name=f"dssl-grid-{item.cell.index + 1}",
        )
        process.start()
        try:
            process.join()
        except BaseException:
            process.terminate()
            process.join()
            raise
        error = error_path.read_text() if error_path.exists() else None
    if process.exitcode != 0 or error:
        detail = error or f"the cell's process ended with exit code {process.exitcode}"
        raise RunFailedError(f"{detail} (log: {log_path})")


#: A traceback's final line: ``package.module.SomeError: message``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*:")


def _run_submitit(
    item: PlannedCell,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    plugins: Mapping[str, Any],
    launcher: LauncherSpec,
    **_: Any,
) -> None:
    """Run one cell as a submitit job (a SLURM job, or a local subprocess) and wait for it."""
    import submitit

    folder = Path(item.config.output_dir) / "grid-logs" / str(tags[GRID_TAG]) / "submitit"
    cluster = None if launcher.cluster == "auto" else launcher.cluster
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters: dict[str, Any] = {"timeout_min": launcher.timeout_min, "name": f"dssl-{item.cell.run_name}"}
    optional = {
        "slurm_partition": launcher.partition,
        "gpus_per_node": launcher.gpus_per_node,
        "cpus_per_task": launcher.cpus_per_task,
        "mem_gb": launcher.mem_gb,
    }
    parameters |= {k: v for k, v in optional.items() if v is not None}
    if launcher.slurm_additional_parameters:
        parameters["slurm_additional_parameters"] = dict(launcher.slurm_additional_parameters)
    if executor.cluster != "slurm":  # the SLURM-only keys mean nothing to the local executors
        parameters = {k: v for k, v in parameters.items() if not k.startswith("slurm_")}
    executor.update_parameters(**parameters)
    env = _child_env(parent_run_id, tags)
    job = executor.submit(SubmititCell(), item.config.to_dict(), env, dict(plugins), item.resume_run_id, item.label)
    try:
        job.result()
    except submitit.core.utils.FailedJobError as exc:
        raise RunFailedError(f"{_job_error(str(exc))} (job {job.job_id}, logs: {folder})") from None


def _job_error(text: str) -> str:
    """The exception line (``module.Error: message``) of a failed job's traceback, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (raised or lines or ["the job failed"])[-1]


class SubmititCell:
    """What a submitit job runs: one resolved configuration, requeued and resumed when the job is preempted.

    Submitit's checkpointing protocol: on its preemption/timeout signal (``SIGUSR2`` unless
    ``$SUBMITIT_PREEMPT_SIGNAL`` says otherwise) submitit calls :meth:`checkpoint` and requeues the job with
    the submission it returns. The run listens to that signal as well (it is added to the run's
    ``preempt_signals``), so it first finishes its step and writes its checkpoint; the cell then hands the
    signal back to submitit, and the requeued job resumes the run in the same MLflow run. A run preempted by
    one of its own signals (SIGTERM) is handed over the same way.
    """

    def __init__(self) -> None:
        self.resume_target: str | None = None

    def __call__(
        self,
        config: dict[str, Any],
        env: Mapping[str, str],
        plugins: Mapping[str, Any],
        resume_run_id: str | None,
        label: str | None = None,
    ) -> None:
        import submitit

        os.environ.update(env)
        requeue_signal = signal.Signals[f"SIG{submitit.JobEnvironment().USR_SIG}"]
        config = {**config, "preempt_signals": [*config.get("preempt_signals", []), requeue_signal.name]}
        try:
            _run_resolved(config, plugins, self.resume_target or resume_run_id, label)
        except PreemptedError as exc:
            self.resume_target = exc.resume_target or self.resume_target
            if not callable(signal.getsignal(requeue_signal)):
                raise  # not inside a submitit job: nothing would requeue it
            # Submitit's handler calls checkpoint() and requeues this job (it exits the process).
            signal.raise_signal(requeue_signal)
            raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The submission that continues this cell: the same call, resuming the preempted run."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _run_resolved(
    config: dict[str, Any], plugins: Mapping[str, Any], resume_run_id: str | None, label: str | None = None
) -> None:
    """Run (or resume) one resolved configuration in a fresh process (a spawned worker or a job); with a
    ``label``, evaluate its ``backbone.init`` without training (a ``checkpoints`` cell)."""
    from dssl.config import RunConfig
    from dssl.host import get_host
    from dssl.runner import resume_bench, run_bench, run_eval

    host = get_host(disabled=plugins.get("disabled", ()), strict=bool(plugins.get("strict")))
    resolved = RunConfig.model_validate(config)
    if label is not None:
        run_eval(resolved, host=host, label=label)
    elif resume_run_id:
        resume_bench(resume_run_id, host=host, tracking_uri=resolved.tracking.uri)
    else:
        run_bench(resolved, host=host)


def _cell_worker(
    config: dict[str, Any],
    env: Mapping[str, str],
    log_path: str,
    plugins: Mapping[str, Any],
    error_path: str,
    resume_run_id: str | None = None,
    label: str | None = None,
) -> None:
    """Entry point of a spawned cell process: run (or resume) one resolved configuration, output to ``log_path``."""
    os.environ.update(env)
    with open(log_path, "w") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            _run_resolved(config, plugins, resume_run_id, label)
        except BaseException as exc:
            Path(error_path).write_text(_error_text(exc))
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            raise SystemExit(REQUEUE_EXIT_CODE if isinstance(exc, PreemptedError) else 1) from None


def _attempt_run(tracking_uri: str, experiment: str, attempt: str) -> Any:
    client = _client(tracking_uri, create=False)
    if client is None:
        return None
    runs = _search(client, experiment, f"tags.`{ATTEMPT_TAG}` = '{attempt}'")
    return runs[0] if runs else None


def _record_failure(item: PlannedCell, exc: BaseException, *, parent_run_id: str, tags: Mapping[str, str]) -> str:
    """Log a FAILED child run for a cell that failed before its run was created; returns its id."""
    from dssl.tracking.mlflow_tracker import MlflowTracker

    config = item.config
    tracker = MlflowTracker(
        tracking_uri=config.tracking.uri,
        experiment=config.tracking.experiment,
        run_name=config.tracking.run_name,
        parent_run_id=parent_run_id,
        tags=tags,
    )
    tracker.__enter__()
    with contextlib.suppress(Exception):
        tracker.log_params(_cell_params(item))
        tracker.log_dict(config.to_dict(), "config.yaml")
    tracker.__exit__(type(exc), exc, exc.__traceback__)
    return tracker.run_id


def _cell_params(item: PlannedCell) -> dict[str, Any]:
    """The identifying params of a cell's run (a subset of :func:`dssl.runner.run_params` or
    :func:`dssl.runner.eval_params`, without importing torch)."""
    config = item.config
    if item.label is not None:
        return {
            "label": item.label,
            "backbone": config.backbone.name,
            "init": config.backbone.init,
            "evaluators": ",".join(config.evaluators),
            "seed": config.seed,
            "steps": 0,
            "preset": config.preset,
            "config_hash": item.fingerprint,
        }
    return {
        "objective": config.objective.name,
        "backbone": config.backbone.name,
        "dataset": config.dataset.name,
        "evaluators": ",".join(config.evaluators),
        "seed": config.seed,
        "steps": config.optim.steps,
        "preset": config.preset,
        "config_hash": config.fingerprint(),
    }


def _mark_failed(tracking_uri: str, run_id: str, error: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(run_id, "dssl.error", error[:1000])
    client.set_terminated(run_id, status="FAILED")


# -- leaderboard ------------------------------------------------------------------------------------------


def grid_rows(cells: Sequence[PlannedCell], *, tracking_uri: str) -> list[LeaderboardRow]:
    """Aggregate the evaluation metrics of the cells' finished runs over seeds.

    Rows are grouped like the leaderboard's (:func:`dssl.tracking.leaderboard.aggregate_runs`: runs that differ
    only in the seed), named by the cells' labels (objective, backbone and dataset labels), so that numbers of
    two protocol versions never share a column and cells whose settings differ (a per-seed override) never
    share a row. Only the run of each cell counts.
    """
    from dssl.config import comparable_settings
    from dssl.tracking.leaderboard import aggregate_runs

    done = {c.run_id: c for c in cells if c.status in ("finished", "skipped", "done") and c.run_id}
    if not done:
        return []
    client = _client(tracking_uri, create=False)
    if client is None:
        return []

    def labels(run: Any) -> tuple[str, str, str]:
        return _label_of(done[run.info.run_id])

    def settings(run: Any, evaluator: str) -> dict[str, Any]:
        item = done[run.info.run_id]
        return comparable_settings(item.config.to_dict(), evaluator, trained=item.cell.checkpoint is None)

    return aggregate_runs([client.get_run(run_id) for run_id in done], identity=labels, settings=settings)


def _label_of(item: PlannedCell) -> tuple[str, str, str]:
    """The grid row of a cell: its objective (or checkpoint), backbone and dataset labels."""
    return item.cell.objective.key, item.cell.backbone.key, item.cell.dataset.key


def _row_labels(outcome: GridOutcome) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(_label_of(item) for item in outcome.cells))


def _natural(text: str) -> list[Any]:
    """Sort key that orders ``top1_k20`` before ``top1_k100``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass
class _Table:
    """One block of the grid leaderboard: one evaluator under one protocol id on one dataset."""

    title: str
    header: list[str]
    body: list[list[str]]


def _tables(outcome: GridOutcome) -> list[_Table]:
    """The grid leaderboard: per (evaluator, protocol id, dataset, absent-class convention), a row per cell
    label (one per variant when cells of a label differ in more than the seed) and a column per metric.

    A column is one metric under one protocol id, so numbers of two protocol versions never share one.
    """
    groups: dict[tuple[str, str, str, str], list[LeaderboardRow]] = {}
    for row in outcome.rows:
        key = (row.metric.partition("/")[0], row.protocol, row.dataset, row.absent_classes or "")
        groups.setdefault(key, []).append(row)
    tables = []
    for (evaluator, protocol, dataset, absent), rows in sorted(groups.items()):
        metrics: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: _natural(r.metric)):
            metrics.setdefault(row.metric, "↑" if row.direction == "higher" else "↓")
        header = ["objective", "backbone", "dataset", "seeds"]
        header += [f"{metric.partition('/')[2] or metric} {arrow}" for metric, arrow in metrics.items()]
        body = []
        for label in _row_labels(outcome):
            items = [c for c in outcome.cells if _label_of(c) == label]
            ok = sum(c.status in ("finished", "skipped", "done") for c in items)
            failed = sum(c.status == "failed" for c in items)
            seeds = f"{ok}/{len(items)}" + (f" ({failed} failed)" if failed else "")
            mine = [r for r in rows if (r.objective, r.backbone, r.train_dataset or "") == label]
            variants: dict[str, dict[str, LeaderboardRow]] = {}
            for row in mine:
                variants.setdefault(row.row_key or "", {})[row.metric] = row
            for by_metric in variants.values() or [{}]:
                variant = next((r.variant for r in by_metric.values() if r.variant), None)
                objective = label[0] + (" (eval only)" if items[0].label is not None else "")
                objective += f" [{variant}]" if variant else ""
                line = [objective, label[1], label[2], seeds]
                for metric in metrics:
                    row = by_metric.get(metric)
                    if row is None:
                        line.append("—")
                        continue
                    text = row.value_text if math.isfinite(row.mean) else "nan"
                    line.append(text + (f" (n={row.n_seeds})" if row.n_seeds != ok else ""))
                body.append(line)
        title = f"{evaluator} — {protocol} on {dataset}" + (f" (absent classes: {absent})" if absent else "")
        tables.append(_Table(title=title, header=header, body=body))
    return tables


def render_grid_markdown(outcome: GridOutcome) -> str:
    """The grid leaderboard as Markdown: a table per evaluator and protocol, then the per-metric rankings."""
    from dssl.tracking.leaderboard import render

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# Grid {outcome.name}", "", "_mean ± std over seeds; seeds: finished/total_"]
    for table in _tables(outcome):
        lines += ["", f"## {cell(table.title)}", ""]
        lines.append("| " + " | ".join(cell(h) for h in table.header) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(table.header) - 3)) + "|")
        lines += ["| " + " | ".join(cell(c) for c in line) + " |" for line in table.body]
    if outcome.failed:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"- {c.cell.label} seed {c.cell.seed}: {cell(c.error or '')} (run {c.run_id})" for c in outcome.failed
        ]
    if outcome.rows:
        lines += ["", "## Rankings", "", render(outcome.rows, "markdown")]
    return "\n".join(lines) + "\n"


def print_grid(outcome: GridOutcome, console: Console) -> None:
    """Print the grid leaderboard (rich): a table per evaluator and protocol id."""
    from rich.markup import escape
    from rich.table import Table

    tables = _tables(outcome)
    if not tables:
        console.print(f"grid {escape(outcome.name)}: no finished cell with evaluation metrics")
    for table in tables:
        shown = Table(
            title=escape(f"grid {outcome.name}: {table.title}"),
            caption="mean ± std over seeds; seeds: finished/total",
            title_justify="left",
            caption_justify="left",
        )
        for i, name in enumerate(table.header):
            shown.add_column(escape(name), justify="right" if i >= 3 else "left")
        for line in table.body:
            shown.add_row(*(escape(text) for text in line))
        console.print(shown)
    for item in outcome.failed:
        console.print(escape(f"FAILED {item.cell.label} seed {item.cell.seed}: {item.error}"), soft_wrap=True)


def _row_json(row: LeaderboardRow) -> dict[str, Any]:
    data = asdict(row)
    for key in ("mean", "std"):
        if data[key] is not None and not math.isfinite(data[key]):
            data[key] = None
    data["column"] = f"{row.metric} ({row.protocol})"
    return data


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
