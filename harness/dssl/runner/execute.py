"""One benchmark run from a resolved configuration: build, train, checkpoint, evaluate, report, log.

Every component is built *before* the MLflow run starts (:mod:`dssl.runner.build`). Once the run starts, any
exception ends it FAILED (Ctrl-C: KILLED) with what was logged so far kept. A preemption signal
(``preempt_signals``, default SIGTERM and SIGUSR1) lets the current training step finish, writes
``checkpoints/last.pt``, marks the MLflow run KILLED with the tag ``dssl.preempted`` and exits with status 75
(:data:`~dssl.errors.REQUEUE_EXIT_CODE`); ``dssl bench --resume`` continues it (:mod:`dssl.runner.resume`). A
tracking server that stops answering degrades tracking to a queue in the run folder (see
:meth:`~dssl.tracking.mlflow_tracker.MlflowTracker.attach_queue`) instead of failing the run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dssl import __version__
from dssl.config import RunConfig
from dssl.errors import DsslError, PreemptedError, RunFailedError
from dssl.host import PluginHost
from dssl.results import RunInfo, RunResults
from dssl.runner.build import BuiltRun, build_eval_run, build_run
from dssl.runner.evaluation import evaluate_backbone, evaluate_baselines
from dssl.runner.report import print_results
from dssl.runner.tracking import (
    RUN_INFO_FILE,
    NoTracker,
    check_tracking,
    notifier,
    open_tracker,
    report_bad_images,
    start_logging,
    tracker_method,
)
from dssl.runner.training import save_checkpoints, train_run
from dssl.tracking.browse import run_description
from dssl.tracking.spool import QUEUE_DIR

if TYPE_CHECKING:
    from dssl.engine.preemption import PreemptionGuard
    from dssl.runner.resume import ResumePoint


def run_eval(config: RunConfig, *, host: PluginHost, label: str | None = None, console: Any = None) -> RunResults:
    """Evaluate the weights ``backbone.init`` names without training them, logged like a ``dssl bench`` run.

    The run has params (:func:`eval_params`), tags (``dssl.evaluation_only`` = ``true``, the label as its
    method), ``config.yaml`` and ``results.json`` like a trained run, and its own leaderboard row.

    Args:
        config: The resolved configuration; only the backbone, its init, the evaluation data, the evaluators
            and the seed matter.
        host: Plugin host.
        label: The weights' name on the leaderboard; default :func:`default_eval_label`.
        console: Rich console for progress and the results table.

    Raises:
        ConfigError: Bad input (unknown backbone, unreadable checkpoint, a tracking server that refuses the
            credentials), before any run is logged.
        RunFailedError: The evaluation started and failed.
    """
    from dssl.engine.preemption import PreemptionGuard

    check_tracking(config)
    with PreemptionGuard(config.preempt_signals) as guard:
        built = build_eval_run(config, host, label=label)
        assert built.label is not None
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in built.label)
        run_dir = Path(config.output_dir) / time.strftime("%Y%m%d-%H%M%S") / f"eval-{slug}-s{config.seed}"
        from dssl.engine.distributed import context

        tracker = open_tracker(config, label=slug) if context().is_main else NoTracker()  # data parallel: rank 0 logs
        return execute_run(built, tracker, host, run_dir, console=console, resume=None, guard=guard)


def run_bench(config: RunConfig, *, host: PluginHost, console: Any = None) -> RunResults:
    """Build, train, evaluate and log one run; returns its results (also written as results.json).

    Raises:
        ConfigError: Bad input, or a tracking server that refuses the credentials (before anything is built).
        PreemptedError: A preemption signal stopped the run after its checkpoint was written.
        RunFailedError: The run started and failed.
    """
    from dssl.engine.distributed import context
    from dssl.engine.preemption import PreemptionGuard

    check_tracking(config)
    with PreemptionGuard(config.preempt_signals) as guard:
        built = build_run(config, host)
        run_dir = Path(config.output_dir) / time.strftime("%Y%m%d-%H%M%S") / f"{config.objective.name}-s{config.seed}"
        tracker = open_tracker(config) if context().is_main else NoTracker()  # data parallel: rank 0 logs
        return execute_run(built, tracker, host, run_dir, console=console, resume=None, guard=guard)


def execute_run(
    built: BuiltRun,
    tracker: Any,
    host: PluginHost,
    run_dir: Path,
    *,
    console: Any,
    resume: ResumePoint | None,
    guard: PreemptionGuard,
) -> RunResults:
    from rich.console import Console

    config = built.config
    console = console or Console(stderr=True)
    started = time.perf_counter()
    status = "FAILED"
    results: RunResults | None = None
    info = RunInfo()
    queue = {
        "notify": notifier(console),
        "retry_every_s": config.tracking.retry_every_s,
        "flush_timeout_s": config.tracking.flush_timeout_s,
    }
    if resume is not None:
        tracker.attach_queue(run_dir / QUEUE_DIR, **queue)  # replays what an earlier process left queued first
    try:
        with tracker:
            info = tracker.info.model_copy(update={"output_dir": str(run_dir)})
            if resume is None and tracker.run_id:
                run_dir = run_dir.parent / tracker.run_id
                info.output_dir = str(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume is None:
                tracker.attach_queue(run_dir / QUEUE_DIR, **queue)
                start_logging(tracker, built, run_dir)
                (run_dir / RUN_INFO_FILE).write_text(info.model_dump_json(indent=2) + "\n")
                verb = "dssl bench"
            else:
                tracker.set_tags({"dssl.resumed_from_step": str(resume.step)})
                verb = f"dssl bench --resume (step {resume.step})"
            host.hook.dssl_run_started(run=info, config=config.to_dict())
            if built.evaluation_only:
                eval_name = (config.eval_dataset or config.dataset).name
                console.print(
                    f"[bold]dssl eval[/] {built.label} on {config.backbone.name}, {eval_name}, {built.device}, "
                    f"nothing trained — {built.init_report}",
                    highlight=False,
                )
                train_metrics: dict[str, float] = {}
                checkpoint: Path | None = None
            else:
                console.print(
                    f"[bold]{verb}[/] {config.objective.name} on {config.backbone.name}, "
                    f"{config.dataset.name}, {built.device}, {config.optim.steps} steps — {built.init_report}"
                )
                checkpoint_state = resume.checkpoint if resume is not None else None
                try:
                    trainer, summary = train_run(built, tracker, host, info, run_dir, console, checkpoint_state, guard)
                except BaseException:
                    with contextlib.suppress(Exception):  # the training error is the story; this must not replace it
                        report_bad_images(tracker, run_dir, console)
                    raise
                report_bad_images(tracker, run_dir, console)
                if not trainer.dist.is_main:  # data parallel: rank 0 checkpoints, evaluates and reports
                    status = "FINISHED"
                    results = RunResults(run=info, config=config.to_dict())
                    return results
                checkpoint = save_checkpoints(built, trainer, run_dir, tracker, console)
                train_metrics = {k: float(v) for k, v in summary.final_metrics.items()}
                train_metrics |= {"seconds": summary.seconds, "images_per_second": summary.images_per_second}
            with guard.interruptible():  # nothing in an evaluation is worth finishing once preempted
                evaluations = evaluate_backbone(built, host, tracker=tracker, info=info, console=console)
                # An evaluation-only run's start is what it evaluates, and random init is a row of its own.
                baselines = {} if built.evaluation_only else evaluate_baselines(built, host, console=console)
            for name, baseline in baselines.items():
                tracker.log_metrics(
                    {f"baseline/{name}/{key}": v for result in baseline for key, v in result.flat_metrics().items()},
                    step=0,
                )
            results = RunResults(
                run=info,
                config=config.to_dict(),
                train=train_metrics,
                evaluations=evaluations,
                init=built.init_report,
                baselines=baselines,
                versions={"dssl-bench": __version__, "torch": torch.__version__} | built.plugins,
                seconds=time.perf_counter() - started,
                checkpoint=None if checkpoint is None else str(checkpoint),
                label=built.label,
            )
            results.write(run_dir / "results.json")
            tracker.log_results(results)
            method = tracker_method(built)
            tracker.set_description(run_description(config, method=method, label=built.label, evaluations=evaluations))
            print_results(results, console)
            status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except PreemptedError as exc:
        status = "KILLED"
        if exc.step is None and (run_dir / "checkpoints" / "last.pt").is_file():
            exc.step = config.optim.steps  # preempted during evaluation: the checkpoint holds every step
        exc.resume_target = info.run_id or str(run_dir)
        raise
    except DsslError:
        raise
    except Exception as exc:
        raise RunFailedError(f"run failed: {type(exc).__name__}: {exc} (use --debug for the traceback)") from exc
    finally:
        host.hook.dssl_run_finished(run=info, status=status, results=results)
    return results
