"""Training a built run with the engine: its loader, trainer, checkpoints and the profiler.

A checkpoint write that fails (full disk, permissions) is retried and otherwise fails the run naming the path,
with the previous checkpoint intact (:mod:`dssl.engine.checkpoint_io`); an unreadable training image is replaced
and reported, or stops the run (``dataset.bad_images``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dssl.config import RunConfig
from dssl.errors import ConfigError
from dssl.host import PluginHost
from dssl.results import RunInfo
from dssl.runner.build import BuiltRun, build_run
from dssl.runner.tracking import BAD_IMAGES_FILE, notifier

if TYPE_CHECKING:
    from dssl.engine.preemption import PreemptionGuard


def train_run(
    built: BuiltRun,
    tracker: Any,
    host: PluginHost,
    info: RunInfo,
    run_dir: Path,
    console: Any,
    checkpoint: Mapping[str, Any] | None = None,
    guard: PreemptionGuard | None = None,
) -> Any:
    """Train a run as ``dssl bench`` does: metrics to the tracker and the lifecycle hooks, checkpoints written every
    ``checkpoint_every`` steps by rank 0, a preemption guard polled, optionally from a resumed ``checkpoint``.

    Returns:
        ``(trainer, summary)``.
    """
    from dssl.engine.progress import TrainingProgress

    config = built.config

    def on_metrics(metrics: Mapping[str, float], step: int) -> None:
        tracker.log_metrics({f"train/{k}": v for k, v in metrics.items()}, step=step)
        host.hook.dssl_metrics_logged(run=info, metrics=dict(metrics), step=step)

    trainer = make_trainer(
        built,
        on_metrics=on_metrics,
        checkpoint_every=config.checkpoint_every,
        stop_requested=guard.poll if guard is not None else None,
    )
    if trainer.dist.is_main:  # data parallel: every rank holds the same state; rank 0 writes it
        last = run_dir / "checkpoints" / "last.pt"
        resume_hint = f"; after fixing it, continue with: dssl bench --resume {info.run_id or run_dir}"

        def write_checkpoint(step: int) -> None:
            _write_with_retries(
                last, lambda: _write_atomic(_full_state(built, trainer, step), last), console, hint=resume_hint
            )

        trainer.on_checkpoint = write_checkpoint
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
    loader = training_batches(built, start_step=trainer.start_step, bad_images_log=run_dir / BAD_IMAGES_FILE)
    with TrainingProgress(config.optim.steps, description="train", every=config.log_every, console=console) as bar:
        summary = trainer.fit(loader, progress=bar)
    return trainer, summary


def make_trainer(built: BuiltRun, **extra: Any) -> Any:
    """The engine's :class:`~dssl.engine.trainer.Trainer` for a built run; ``extra`` adds callbacks/profiler."""
    from dssl.engine.trainer import Trainer

    config = built.config
    return Trainer(
        built.objective,
        config.optim,
        device=built.device,
        precision=config.precision,
        log_every=config.log_every,
        compile=config.compile,
        **extra,
    )


def training_batches(built: BuiltRun, *, start_step: int = 0, bad_images_log: Path | None = None) -> Any:
    """The run's endless loader of view batches, starting at the batch of ``start_step``.

    Args:
        built: The built run.
        start_step: Batches already consumed (a resumed run).
        bad_images_log: Where the training images the loader skips are listed (``dataset.bad_images``).
    """
    from dssl.augment.multicrop import collate_views
    from dssl.engine.distributed import context
    from dssl.engine.loader import training_loader

    config = built.config
    ranks = context()
    return training_loader(
        built.train_set,
        built.augmentation,
        batch_size=config.optim.batch_size,
        seed=config.seed,
        num_workers=config.optim.num_workers,
        collate=collate_views,
        pin_memory=built.device.type == "cuda",
        start_step=start_step,
        rank=ranks.rank,
        world_size=ranks.world_size,
        bad_images=config.dataset.bad_images or "skip",
        bad_images_log=bad_images_log,
    )


def profile_bench(
    config: RunConfig, *, host: PluginHost, steps: int, warmup: int = 2, console: Any = None, profiler: Any = None
) -> Any:
    """Time the phases of ``steps`` training steps of a configuration; no evaluation, nothing logged.

    The run is built exactly as :func:`run_bench` builds it and trained by the same
    :class:`~dssl.engine.trainer.Trainer` (with its usual schedules for ``optim.steps``), which stops after
    ``warmup + steps`` steps; the last ``steps`` are split into data, forward, backward, optimizer and
    logging time by a :class:`~dssl.engine.profiling.StepProfiler` (device synchronised around phases on
    CUDA). Nothing is checkpointed and MLflow is not touched.

    Args:
        config: A resolved run configuration.
        host: Plugin host that builds the components.
        steps: Steps to record (``>= 1``).
        warmup: Steps run first and not recorded.
        console: Rich console for the table (default: stdout).
        profiler: A :class:`~dssl.engine.profiling.StepProfiler` (or subclass) for ``steps`` and ``warmup``;
            default: a new one.

    Returns:
        The :class:`~dssl.engine.profiling.PhaseReport`.

    Raises:
        ConfigError: ``warmup + steps`` exceeds ``optim.steps``, or the configuration does not build.
    """
    from rich.console import Console

    from dssl.engine.profiling import StepProfiler

    if steps < 1:
        raise ConfigError(f"--profile-steps must be >= 1, got {steps}")
    if warmup + steps > config.optim.steps:
        raise ConfigError(
            f"--profile-steps {steps} needs {warmup + steps} steps ({warmup} warm-up) but optim.steps is "
            f"{config.optim.steps}; raise --steps"
        )
    console = console or Console()
    built = build_run(config, host)
    profiler = profiler or StepProfiler(built.device, steps=steps, warmup=warmup)
    trainer = make_trainer(built, profiler=profiler)
    trainer.fit(training_batches(built))
    report = profiler.report()
    console.print(
        report.table(
            f"dssl bench --profile-steps: {config.objective.name} on {config.backbone.name}, {built.device}, "
            f"batch {config.optim.batch_size}, {config.optim.num_workers} loader workers"
        )
    )
    return report


def _full_state(built: BuiltRun, trainer: Any, step: int) -> dict[str, Any]:
    """The trainer's resumable state plus the fingerprint of the configuration that wrote it."""
    return trainer.state_dict(step) | {"fingerprint": built.config.fingerprint()}


def _write_atomic(state: Mapping[str, Any], path: Path) -> Path:
    """Write a checkpoint so that ``path`` is always whole (see :func:`~dssl.engine.checkpoint_io.save_atomic`)."""
    from dssl.engine.checkpoint_io import save_atomic

    return save_atomic(dict(state), path)


def _write_with_retries(path: Path, write: Callable[[], Path], console: Any, *, hint: str = "") -> Path:
    """``write`` ``path``, retried after a failed write; the run fails naming the path when every attempt fails."""
    from dssl.engine.checkpoint_io import write_with_retries

    return write_with_retries(path, write, notify=notifier(console), hint=hint)


def save_checkpoints(built: BuiltRun, trainer: Any, run_dir: Path, tracker: Any, console: Any) -> Path:
    from dssl.backbones.checkpoint import save_backbone

    steps = built.config.optim.steps
    last = run_dir / "checkpoints" / "last.pt"
    full = _write_with_retries(last, lambda: _write_atomic(_full_state(built, trainer, steps), last), console)
    backbone_path = _write_with_retries(
        run_dir / "checkpoints" / "backbone.pt",
        lambda: save_backbone(
            built.objective.eval_backbone(),  # type: ignore[operator]
            run_dir / "checkpoints" / "backbone.pt",
            meta={"objective": built.config.objective.name, "steps": steps},
        ),
        console,
    )
    tracker.log_artifact(backbone_path, "checkpoints")
    return full
