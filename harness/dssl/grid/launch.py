"""Running one grid cell: in this process, in a spawned process, or as a submitit job; recording its outcome.

Cells run in this process one after another, or ``parallel`` at a time, each in a fresh (spawned) Python
process that runs the very configuration resolved by the plan (its output goes to
``<output_dir>/grid-logs/<grid>/<cell>.log``) and nests its run through ``$DSSL_PARENT_RUN_ID``.

Preemption: a cell run in this process that is preempted stops the grid too (the parent run ends KILLED,
exit status 75); rerunning the grid resumes the cell. A submitit job follows submitit's checkpointing
protocol (:class:`SubmititCell`): a preempted or timed-out job writes its checkpoint, is requeued, and the
requeued job resumes the cell in the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dssl.errors import REQUEUE_EXIT_CODE, PreemptedError, RunFailedError
from dssl.grid.plan import (
    ATTEMPT_TAG,
    CELL_TAG,
    FINGERPRINT_TAG,
    GRID_TAG,
    LABEL_TAG,
    PlannedCell,
    search_experiment,
    store_client,
)
from dssl.grid.spec import LauncherSpec

if TYPE_CHECKING:
    from rich.console import Console

    from dssl.host import PluginHost


def cell_executor(
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
        console.print(escape(f"  {item.title}: {doing} ({item.fingerprint})"), soft_wrap=True)
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
        console.print(escape(f"  {item.title}: {item.report}"), soft_wrap=True)

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


def run_in_process(
    item: PlannedCell,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    host: PluginHost,
    **_: Any,
) -> None:
    """Run (or resume) one cell in this process, as a child run of the grid's run."""
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


def run_spawned(
    item: PlannedCell,
    *,
    parent_run_id: str,
    tags: Mapping[str, str],
    plugins: Mapping[str, Any],
    parallel: int,
    **_: Any,
) -> None:
    """Run one cell in a fresh spawned process (output in ``grid-logs/``), sharing the cores with ``parallel``."""
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


def run_submitit(
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
    client = store_client(tracking_uri, create=False)
    if client is None:
        return None
    runs = search_experiment(client, experiment, f"tags.`{ATTEMPT_TAG}` = '{attempt}'")
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
