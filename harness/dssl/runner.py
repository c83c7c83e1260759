"""One benchmark run: build the components, train, checkpoint, evaluate frozen features, report, log.

Every component is built *before* the MLflow run starts, so that bad input (an unknown backbone, a
corrupt checkpoint, an image size the patch size does not divide, a tracking server that refuses the
credentials) exits with code 2 and leaves no FAILED run behind. Once the run starts, any exception ends
it FAILED (Ctrl-C: KILLED) with what was logged so far kept.

Long runs also survive the real world:

* a preemption signal (``preempt_signals``, default SIGTERM and SIGUSR1) lets the current training step
  finish, writes ``checkpoints/last.pt``, marks the MLflow run KILLED with the tag ``dssl.preempted`` and
  exits with status 75 (:data:`~dssl.errors.REQUEUE_EXIT_CODE`); ``dssl bench --resume`` continues it;
* a tracking server that stops answering degrades tracking to a queue in the run folder (see
  :meth:`~dssl.tracking.mlflow_tracker.MlflowTracker.attach_queue`) instead of failing the run;
* a checkpoint write that fails (full disk, permissions) is retried and otherwise fails the run naming the
  path, with the previous checkpoint intact (:mod:`dssl.engine.checkpoint_io`);
* an unreadable training image is replaced and reported, or stops the run (``dataset.bad_images``).
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dssl import __version__
from dssl.config import RunConfig, resolve_backbone_entry
from dssl.errors import ConfigError, DsslError, PreemptedError, RunFailedError
from dssl.host import PluginHost
from dssl.results import EvaluationResult, RunInfo, RunResults
from dssl.tracking.browse import dataset_inputs, run_description
from dssl.tracking.leaderboard import EVALUATION_ONLY_TAG, METHOD_TAG, ROW_KEY_TAG
from dssl.tracking.mlflow_tracker import OUTPUT_DIR_TAG
from dssl.tracking.spool import QUEUE_DIR

if TYPE_CHECKING:
    from dssl.engine.preemption import PreemptionGuard

#: Written into a run's folder by its training loader: the training images it could not decode and skipped.
BAD_IMAGES_FILE = "bad_images.txt"
#: Tags of a run that skipped unreadable training images: how many files, and the first few names.
BAD_IMAGES_TAG = "dssl.bad_images"
BAD_IMAGES_FIRST_TAG = "dssl.bad_images.first"


@dataclass
class BuiltRun:
    """The components of a run, built and validated, before anything is trained or logged.

    An evaluation-only run (``dssl eval``, :func:`build_eval_run`) has no training set, augmentation or
    objective: it carries the ``backbone`` it evaluates and the ``label`` that names those weights.
    """

    config: RunConfig
    device: torch.device
    train_set: Any
    eval_train: Any
    eval_val: Any
    augmentation: Any
    objective: nn.Module | None
    init_report: str
    plugins: dict[str, str]
    start_backbone: nn.Module | None = None
    init: str = "random"
    backbone: nn.Module | None = None
    label: str | None = None

    @property
    def evaluation_only(self) -> bool:
        """Nothing is trained: the weights of ``backbone.init`` are evaluated as they are."""
        return self.objective is None

    def evaluated_backbone(self) -> nn.Module:
        """The network the evaluators see: the objective's (DINO: the teacher), or an evaluation-only run's."""
        if self.objective is None:
            assert self.backbone is not None  # build_eval_run sets it
            return self.backbone
        return self.objective.eval_backbone()  # type: ignore[operator]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available (use --device cpu or auto)")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per local rank
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(requested)


def _options(entry: Any, values: Mapping[str, Any]) -> Any:
    model = entry.options_model()
    return model.model_validate(dict(values)) if model is not None else None


def build_run(config: RunConfig, host: PluginHost) -> BuiltRun:
    """Build datasets, augmentation, backbone (with its initial weights) and objective."""
    from dssl.backbones.checkpoint import load_init
    from dssl.engine.distributed import init_from_env
    from dssl.engine.seeding import seed_everything

    device = resolve_device(config.device)
    init_from_env(device).local_batch_size(config.optim.batch_size)
    seed_everything(config.seed)

    dataset_entry = host.get("dataset", config.dataset.name)
    dataset_options = _options(dataset_entry, config.dataset.options)
    build_dataset = dataset_entry.load()
    data_root = resolve_data_root(config.data_root)
    train_set = build_dataset(dataset_options, split="train", data_root=data_root)
    eval_train, eval_val = build_eval_datasets(config, host, train_set=train_set)

    assert config.augmentation.name is not None  # filled in by validate_components
    augmentation_entry = host.get("augmentation", config.augmentation.name)
    augmentation_options = _options(augmentation_entry, config.augmentation.options)
    augmentation = augmentation_entry.load()(augmentation_options)

    objective_entry = host.get("objective", config.objective.name)
    objective_cls = objective_entry.load()
    objective_options = _options(objective_entry, config.objective.options)

    backbone = build_backbone(config, host, augmentation_options=augmentation_options)
    check_views_fit(augmentation, train_set, backbone.patch_size, config.seed)
    init = resolve_init(config.backbone.init, config.backbone.name)
    init_report = load_init(backbone, init)
    if config.backbone.init == "warmstart" and init == "random":
        init_report.source = f"random (no warm start for {config.backbone.name})"
    objective = objective_cls(backbone, objective_options, total_steps=config.optim.steps)
    extras = objective.load_init_extras(init) if init not in ("random", "timm") else None
    objective = objective.to(device)
    plugins = {r.distribution: r.version for r in host.records if r.status == "loaded"}
    # The evaluated network as training finds it, kept aside when the run compares itself with its start.
    keep_start = "start" in config.baselines or ("random" in config.baselines and init == "random")
    start_backbone = copy.deepcopy(objective.eval_backbone()) if keep_start else None
    return BuiltRun(
        config=config,
        device=device,
        train_set=train_set,
        eval_train=eval_train,
        eval_val=eval_val,
        augmentation=augmentation,
        objective=objective,
        init_report=init_report.summary() + (f"; {extras}" if extras else ""),
        plugins=plugins,
        start_backbone=start_backbone,
        init=init,
    )


def build_eval_run(config: RunConfig, host: PluginHost, *, label: str | None = None) -> BuiltRun:
    """Build what evaluating ``backbone.init`` as it is needs: the evaluation datasets and the initialised backbone.

    Nothing of training is built (no training set, augmentation or objective). The backbone is the one
    ``dssl bench`` would train (alias, options, input size) with the extra tokens a dssl checkpoint records,
    so that ``--init runs:/ID`` evaluates exactly the network that run evaluated; ``random`` draws the weights
    from the run's seed, as the random-init baseline of ``dssl bench`` does.

    Args:
        config: The resolved configuration (its training settings are ignored).
        host: Plugin host.
        label: The name of the weights on the leaderboard; default :func:`default_eval_label`.
    """
    from dssl.backbones.checkpoint import load_init
    from dssl.engine.seeding import seed_everything

    device = resolve_device(config.device)
    eval_train, eval_val = build_eval_datasets(config, host)
    init = resolve_init(config.backbone.init, config.backbone.name)
    seed_everything(config.seed)  # random init: the weights a random-init run of this seed starts from
    backbone = build_backbone(config, host, extra_tokens=_recorded_extra_tokens(init))
    init_report = load_init(backbone, init)
    if config.backbone.init == "warmstart" and init == "random":
        init_report.source = f"random (no warm start for {config.backbone.name})"
    return BuiltRun(
        config=config,
        device=device,
        train_set=None,
        eval_train=eval_train,
        eval_val=eval_val,
        augmentation=None,
        objective=None,
        init_report=init_report.summary(),
        plugins={r.distribution: r.version for r in host.records if r.status == "loaded"},
        init=init,
        backbone=backbone.to(device),
        label=label or default_eval_label(config.backbone.init),
    )


def _recorded_extra_tokens(init: str) -> int:
    """The extra prefix tokens (UDI's, STELLAR's) a dssl backbone checkpoint was saved with; 0 for other inits."""
    from dssl.backbones.checkpoint import CHECKPOINT_FORMAT, checkpoint_entry

    if init in ("random", "timm") or not Path(init).is_file():
        return 0
    if checkpoint_entry(init, "format") != CHECKPOINT_FORMAT:
        return 0
    return int(checkpoint_entry(init, "config", "extra_tokens") or 0)


def default_eval_label(init: str) -> str:
    """The leaderboard name of weights evaluated without training, from what ``--init`` says.

    ``random`` -> ``random init``, ``timm`` -> ``timm pretrained``, ``runs:/ID`` -> ``run ID[:8]``,
    ``warmstart[:NAME]`` as given, a file -> its name without the suffix.
    """
    if init == "random":
        return "random init"
    if init == "timm":
        return "timm pretrained"
    if init.startswith("runs:/"):
        return f"run {init.removeprefix('runs:/').strip('/')[:8]}"
    if init == "warmstart" or init.startswith("warmstart:"):
        return init
    return Path(init).stem or init


def build_eval_datasets(config: RunConfig, host: PluginHost, *, train_set: Any = None) -> tuple[Any, Any]:
    """The evaluators' train and val splits: ``eval_dataset``'s, else the training dataset's.

    Args:
        config: The run configuration.
        host: Plugin host (dataset registry).
        train_set: The already built training split, reused as the evaluators' train split when the run has
            no separate ``eval_dataset``.
    """
    spec = config.eval_dataset or config.dataset
    entry = host.get("dataset", spec.name)
    options = _options(entry, spec.options)
    build = entry.load()
    data_root = resolve_data_root(config.data_root)
    if config.eval_dataset is None and train_set is not None:
        eval_train = train_set
    else:
        eval_train = build(options, split="train", data_root=data_root)
    return eval_train, build(options, split="val", data_root=data_root)


def build_backbone(
    config: RunConfig, host: PluginHost, *, augmentation_options: Any = None, extra_tokens: int | None = None
) -> nn.Module:
    """The run's backbone at random init: its alias/timm name, input size and the objective's extra tokens.

    Args:
        config: The run configuration.
        host: Plugin host (backbone and objective registries).
        augmentation_options: The validated augmentation options (their ``global_size`` is the default
            input size); validated from ``config`` when ``None``.
        extra_tokens: Extra prefix tokens; default: those the objective adds.
    """
    if augmentation_options is None and config.augmentation.name is not None:
        entry = host.get("augmentation", config.augmentation.name)
        augmentation_options = _options(entry, config.augmentation.options)
    objective_entry = host.get("objective", config.objective.name)
    objective_options = _options(objective_entry, config.objective.options)
    backbone_entry = resolve_backbone_entry(host, config.backbone.name)
    backbone_options = dict(config.backbone.options)
    img_size = backbone_options.pop("img_size", None) or getattr(augmentation_options, "global_size", None) or 224
    if backbone_entry.metadata.get("timm_args"):
        backbone_options["timm_args"] = backbone_entry.metadata["timm_args"]
    return backbone_entry.load()(
        name=config.backbone.name,
        timm_name=backbone_entry.metadata.get("timm_name"),
        img_size=img_size,
        extra_tokens=objective_entry.load().extra_tokens(objective_options) if extra_tokens is None else extra_tokens,
        **backbone_options,
    )


def resolve_data_root(configured: str | None) -> Path | None:
    """``data_root`` from the config, else ``$DSSL_DATA_ROOT``, else None (only generated data then)."""
    import os

    value = configured or os.environ.get("DSSL_DATA_ROOT")
    return Path(value).expanduser() if value else None


def check_views_fit(augmentation: Any, dataset: Any, patch_size: int, seed: int) -> None:
    """Render one sample's views now, so that a crop size the patch size does not divide is a config error."""
    views = augmentation(dataset[0]["image"], generator=torch.Generator().manual_seed(seed))
    for index, crop in enumerate(views.crops):
        height, width = crop.shape[-2:]
        if height % patch_size or width % patch_size:
            kind = "global" if index < views.n_global else "local"
            raise ConfigError(
                f"{kind} view {index} is {height}x{width} pixels, not a multiple of the patch size {patch_size}; "
                f"choose augmentation.options.global_size/local_size divisible by {patch_size}"
            )


def resolve_init(init: str, backbone: str | None = None) -> str:
    """The local file (or ``random`` / ``timm``) an ``--init`` value names.

    ``runs:/RUN_ID`` is that run's logged backbone checkpoint; ``warmstart`` is the warm start that
    ``registry.yaml`` lists for ``backbone`` (random init when there is none), ``warmstart:NAME`` a named one.
    """
    if init == "warmstart" or init.startswith("warmstart:"):
        from dssl.catalogue import load_catalogue

        warm = load_catalogue().warmstart_for(init, backbone or "")
        if warm is None:
            return "random"
        if not warm.path().is_file():
            raise ConfigError(f"--init {init}: the warm start file {warm.path()} is missing from this installation")
        return str(warm.path())
    if not init.startswith("runs:/"):
        return init
    run_id = init.removeprefix("runs:/").strip("/")
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    try:
        import mlflow

        return mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoints/backbone.pt", tracking_uri=default_tracking_uri()
        )
    except Exception as exc:  # mlflow raises several unrelated types for a missing run or artifact
        raise ConfigError(f"--init {init}: cannot fetch checkpoints/backbone.pt from that run: {exc}") from None


class _NoTracker:
    """Stands in for MLflow when tracking is disabled."""

    run_id: str | None = None

    def __enter__(self) -> _NoTracker:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    @property
    def info(self) -> RunInfo:
        return RunInfo()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("log_") or name in ("set_tags", "set_description", "attach_queue"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def _tracker(config: RunConfig, *, resume_run_id: str | None = None, label: str | None = None) -> Any:
    if not config.tracking.enabled:
        return _NoTracker()
    from dssl.tracking.mlflow_tracker import MlflowTracker

    what = f"eval-{label}" if label is not None else config.objective.name
    return MlflowTracker(
        tracking_uri=config.tracking.uri,
        experiment=config.tracking.experiment,
        run_name=config.tracking.run_name or f"{what}-{config.backbone.name}-s{config.seed}",
        resume_run_id=resume_run_id,
    )


def run_params(config: RunConfig) -> dict[str, Any]:
    """Short, flat parameters (the full resolved config is an artifact)."""
    return {
        "objective": config.objective.name,
        "backbone": config.backbone.name,
        "dataset": config.dataset.name,
        "eval_dataset": (config.eval_dataset or config.dataset).name,
        "augmentation": config.augmentation.name,
        "evaluators": ",".join(config.evaluators),
        "seed": config.seed,
        "steps": config.optim.steps,
        "batch_size": config.optim.batch_size,
        "lr": config.optim.lr,
        "precision": config.precision,
        "preset": config.preset,
        "init": config.backbone.init,
        "config_hash": config.fingerprint(),
    }


def eval_params(config: RunConfig, label: str) -> dict[str, Any]:
    """The params of an evaluation-only run: what was evaluated (``label``, backbone, init), how, and ``steps`` 0."""
    return {
        "label": label,
        "backbone": config.backbone.name,
        "init": config.backbone.init,
        "eval_dataset": (config.eval_dataset or config.dataset).name,
        "evaluators": ",".join(config.evaluators),
        "seed": config.seed,
        "steps": 0,
        "precision": config.precision,
        "preset": config.preset,
        "config_hash": config.fingerprint(trained=False),
    }


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

    _check_tracking(config)
    with PreemptionGuard(config.preempt_signals) as guard:
        built = build_eval_run(config, host, label=label)
        assert built.label is not None
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in built.label)
        run_dir = Path(config.output_dir) / time.strftime("%Y%m%d-%H%M%S") / f"eval-{slug}-s{config.seed}"
        from dssl.engine.distributed import context

        tracker = _tracker(config, label=slug) if context().is_main else _NoTracker()  # data parallel: rank 0 logs
        return _execute(built, tracker, host, run_dir, console=console, resume=None, guard=guard)


def run_bench(config: RunConfig, *, host: PluginHost, console: Any = None) -> RunResults:
    """Build, train, evaluate and log one run; returns its results (also written as results.json).

    Raises:
        ConfigError: Bad input, or a tracking server that refuses the credentials (before anything is built).
        PreemptedError: A preemption signal stopped the run after its checkpoint was written.
        RunFailedError: The run started and failed.
    """
    from dssl.engine.distributed import context
    from dssl.engine.preemption import PreemptionGuard

    _check_tracking(config)
    with PreemptionGuard(config.preempt_signals) as guard:
        built = build_run(config, host)
        run_dir = Path(config.output_dir) / time.strftime("%Y%m%d-%H%M%S") / f"{config.objective.name}-s{config.seed}"
        tracker = _tracker(config) if context().is_main else _NoTracker()  # data parallel: rank 0 logs
        return _execute(built, tracker, host, run_dir, console=console, resume=None, guard=guard)


def _check_tracking(config: RunConfig) -> None:
    """Fail before anything is built when the tracking server refuses this process's credentials."""
    if config.tracking.enabled:
        from dssl.tracking.mlflow_tracker import check_tracking_access

        check_tracking_access(config.tracking.uri)


@dataclass
class ResumePoint:
    """An interrupted run found by :func:`find_resume_point`: where it lives and what it had done."""

    run_id: str | None
    run_dir: Path
    config: RunConfig
    checkpoint: dict[str, Any]

    @property
    def step(self) -> int:
        """Optimiser steps the checkpoint holds."""
        return int(self.checkpoint["step"])


def resume_bench(target: str, *, host: PluginHost, tracking_uri: str | None = None, console: Any = None) -> RunResults:
    """Continue an interrupted run from its last checkpoint, in the same MLflow run.

    Args:
        target: The MLflow run id, or the run's local folder (the one holding ``checkpoints/last.pt``).
        host: Plugin host that builds the components.
        tracking_uri: Where the run is tracked; default: the run's own URI, else :func:`default_tracking_uri`.
        console: Rich console for progress and the results table.

    Returns:
        The results of the whole run, identical on the CPU to those of an uninterrupted run.

    Raises:
        UsageError: Unknown run, finished run, run without checkpoint, unreadable checkpoint.
    """
    from dssl.engine.preemption import PreemptionGuard

    if tracking_uri is not None:
        from dssl.tracking.mlflow_tracker import check_tracking_access

        check_tracking_access(tracking_uri)  # before the run is looked up there
    point = find_resume_point(target, host=host, tracking_uri=tracking_uri)
    if tracking_uri is None:
        _check_tracking(point.config)
    with PreemptionGuard(point.config.preempt_signals) as guard:
        built = build_run(point.config, host)
        tracker = _tracker(point.config, resume_run_id=point.run_id)
        return _execute(built, tracker, host, point.run_dir, console=console, resume=point, guard=guard)


def _execute(
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
        "notify": _notifier(console),
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
                _start_logging(tracker, built, run_dir)
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
                    trainer, summary = _train(built, tracker, host, info, run_dir, console, checkpoint_state, guard)
                except BaseException:
                    with contextlib.suppress(Exception):  # the training error is the story; this must not replace it
                        _report_bad_images(tracker, run_dir, console)
                    raise
                _report_bad_images(tracker, run_dir, console)
                if not trainer.dist.is_main:  # data parallel: rank 0 checkpoints, evaluates and reports
                    status = "FINISHED"
                    results = RunResults(run=info, config=config.to_dict())
                    return results
                checkpoint = _save_checkpoints(built, trainer, run_dir, tracker, console)
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


def _notifier(console: Any) -> Callable[[str], None]:
    """One yellow line on ``console`` (not parsed as markup: paths and URLs print as they are)."""
    return lambda text: console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)


def _report_bad_images(tracker: Any, run_dir: Path, console: Any) -> None:
    """Tag and log the training images the loader skipped (count, first names, the full list as an artifact)."""
    from dssl.engine.loader import read_bad_images

    log = run_dir / BAD_IMAGES_FILE
    skipped = read_bad_images(log)
    if not skipped:
        return
    first = [Path(path).name for path in list(skipped)[:5]]
    tracker.set_tags({BAD_IMAGES_TAG: str(len(skipped)), BAD_IMAGES_FIRST_TAG: ", ".join(first)})
    tracker.log_artifact(log)
    more = f" and {len(skipped) - len(first)} more" if len(skipped) > len(first) else ""
    _notifier(console)(
        f"skipped {len(skipped)} unreadable training images ({', '.join(first)}{more}); each was replaced by "
        f"the next readable image; listed in {log}"
    )


#: Written into a run's folder when it starts: its MLflow identity, so that ``--resume FOLDER`` (and ``dssl sync``)
#: finds the run.
RUN_INFO_FILE = "run.json"


def find_resume_point(target: str, *, host: PluginHost, tracking_uri: str | None = None) -> ResumePoint:
    """Locate an interrupted run, its configuration and its last checkpoint.

    Args:
        target: The MLflow run id, or the run's local folder (or its ``checkpoints/last.pt``).
        host: Plugin host used to validate the run's configuration.
        tracking_uri: Tracking URI overriding the one the run recorded.

    Returns:
        The run's identity, folder, configuration (with ``tracking_uri`` applied) and checkpoint.

    Raises:
        UsageError: Unknown run id or folder, a run that already finished, no or an unreadable checkpoint.
    """
    import yaml

    from dssl.errors import UsageError

    path = Path(target).expanduser()
    run_id: str | None
    if path.exists():
        run_dir = path.parent.parent if path.is_file() and path.parent.name == "checkpoints" else path
        if not run_dir.is_dir():
            raise UsageError(f"--resume {target}: expected a run folder (holding checkpoints/last.pt) or a run id")
        recorded = RunInfo()
        if (run_dir / RUN_INFO_FILE).is_file():
            recorded = RunInfo.model_validate_json((run_dir / RUN_INFO_FILE).read_text())
        run_id = recorded.run_id
        tracking_uri = tracking_uri or recorded.tracking_uri
        if run_id is not None:
            _check_resumable_run(run_id, tracking_uri, target)
    else:
        run_id = target
        run = _check_resumable_run(run_id, tracking_uri, target)
        folder = run.data.tags.get(OUTPUT_DIR_TAG)
        if not folder:
            raise UsageError(
                f"--resume {target}: the run records no local folder ({OUTPUT_DIR_TAG} tag); nothing to resume"
            )
        run_dir = Path(folder)
    if (run_dir / "results.json").is_file():
        raise UsageError(f"--resume {target}: the run finished ({run_dir / 'results.json'} exists); nothing to resume")
    last = run_dir / "checkpoints" / "last.pt"
    # A crash while a checkpoint was being written leaves only the temporary file torn; last.pt is whole.
    with contextlib.suppress(OSError):
        last.with_suffix(last.suffix + ".tmp").unlink()
    if not last.is_file():
        raise UsageError(
            f"--resume {target}: no checkpoint at {last} (set checkpoint_every to checkpoint during training)"
        )
    try:
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise UsageError(f"--resume {target}: cannot read {last}: {type(exc).__name__}: {exc}") from None
    if not isinstance(checkpoint, dict) or not {"step", "objective", "optimizer", "rng"} <= checkpoint.keys():
        raise UsageError(f"--resume {target}: {last} is not a resumable training checkpoint (older dssl?)")
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        data = yaml.safe_load(config_file.read_text())
    elif run_id is not None:
        data = yaml.safe_load(_download_text(run_id, "config.yaml", tracking_uri))
    else:
        raise UsageError(f"--resume {target}: {config_file} is missing")
    try:
        config = RunConfig.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"--resume {target}: the run's config.yaml is not valid: {exc}") from None
    if tracking_uri is not None:
        config.tracking.uri = tracking_uri
    if run_id is None:
        config.tracking.enabled = False  # the run was not tracked; its resumption is not either
    from dssl.config import validate_components

    config = validate_components(config, host)
    fingerprint = checkpoint.get("fingerprint")
    if fingerprint is not None and fingerprint != config.fingerprint():
        raise UsageError(f"--resume {target}: {last} was written by another configuration than config.yaml")
    return ResumePoint(run_id=run_id, run_dir=run_dir, config=config, checkpoint=checkpoint)


def _check_resumable_run(run_id: str, tracking_uri: str | None, target: str) -> Any:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dssl.errors import UsageError
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException:
        raise UsageError(f"--resume {target}: no run folder and no MLflow run with that id in {uri}") from None
    if run.info.status == "FINISHED":
        raise UsageError(f"--resume {target}: MLflow run {run_id} is FINISHED; nothing to resume")
    return run


def _download_text(run_id: str, artifact: str, tracking_uri: str | None) -> str:
    from mlflow import MlflowClient

    from dssl.errors import UsageError
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    try:
        local = MlflowClient(tracking_uri=uri).download_artifacts(run_id, artifact)
    except Exception as exc:
        raise UsageError(f"cannot fetch {artifact} of MLflow run {run_id}: {exc}") from None
    return Path(local).read_text()


def tracker_method(built: BuiltRun) -> str:
    """The method's leaderboard name (tag ``dssl.method``): the objective's label for a variant that is its own
    method (``cotap+oaf``), else the objective; an evaluation-only run's label."""
    if built.label is not None:
        return built.label
    return getattr(built.objective, "method_label", "") or built.config.objective.name


def _split_sizes(built: BuiltRun) -> dict[str, dict[str, int]]:
    """Images per split of what the run trains and evaluates on (splits without a length are left out)."""

    def sizes(**splits: Any) -> dict[str, int]:
        return {name: len(data) for name, data in splits.items() if hasattr(data, "__len__")}

    return {"training": sizes(train=built.train_set), "evaluation": sizes(train=built.eval_train, val=built.eval_val)}


def _start_logging(tracker: Any, built: BuiltRun, run_dir: Path) -> None:
    from dssl.tracking.mlflow_tracker import environment_tags

    config = built.config
    trained = not built.evaluation_only
    method = tracker_method(built)
    if trained:
        tracker.log_params(run_params(config))
        marker: dict[str, str] = {}
    else:
        assert built.label is not None
        tracker.log_params(eval_params(config, built.label))
        marker = {EVALUATION_ONLY_TAG: "true"}
    tracker.set_tags(
        environment_tags(device=str(built.device), plugins=built.plugins)
        | {"dssl.init": built.init_report[:500], METHOD_TAG: method}
        | marker
        | {f"{ROW_KEY_TAG}{name}": config.row_key(name, trained=trained) for name in config.evaluators}
    )
    tracker.set_tags({OUTPUT_DIR_TAG: str(run_dir.resolve())})
    tracker.set_description(run_description(config, method=method, label=built.label))
    tracker.log_dataset_inputs(
        dataset_inputs(
            config, trained=trained, sizes=_split_sizes(built), data_root=resolve_data_root(config.data_root)
        )
    )
    tracker.log_dict(config.to_dict(), "config.yaml")
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _train(
    built: BuiltRun,
    tracker: Any,
    host: PluginHost,
    info: RunInfo,
    run_dir: Path,
    console: Any,
    checkpoint: Mapping[str, Any] | None = None,
    guard: PreemptionGuard | None = None,
) -> Any:
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


def profile_bench(config: RunConfig, *, host: PluginHost, steps: int, warmup: int = 2, console: Any = None) -> Any:
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
    profiler = StepProfiler(built.device, steps=steps, warmup=warmup)
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

    return write_with_retries(path, write, notify=_notifier(console), hint=hint)


def _save_checkpoints(built: BuiltRun, trainer: Any, run_dir: Path, tracker: Any, console: Any) -> Path:
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


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def evaluate_backbone(
    built: BuiltRun,
    host: PluginHost,
    *,
    backbone: nn.Module | None = None,
    tracker: Any = None,
    info: RunInfo | None = None,
    console: Any = None,
) -> list[EvaluationResult]:
    """Evaluate frozen features with the run's evaluators, exactly as ``dssl bench`` does after training.

    Args:
        built: The built run (its configuration, evaluation datasets and device).
        host: Plugin host (evaluator registry and lifecycle hooks).
        backbone: The backbone to evaluate; default: :meth:`BuiltRun.evaluated_backbone` (DINO: the teacher).
        tracker: Where each result is logged as it arrives, followed by the ``dssl_evaluation_finished``
            hook; default: nowhere and no hook (the results are only returned).
        info: The run's identity for the lifecycle hooks.
        console: Rich console for the evaluators' progress; default: stderr.

    Returns:
        One :class:`~dssl.results.EvaluationResult` per configured evaluator, in order.
    """
    from rich.console import Console

    from dssl.engine.progress import StageProgress
    from dssl.engine.trainer import autocast_dtype

    config = built.config
    backbone = backbone if backbone is not None else built.evaluated_backbone()
    console = console if console is not None else Console(stderr=True)
    amp = autocast_dtype(config.precision, built.device)

    def frozen(method: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(images: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                images = images.to(built.device, non_blocking=True)
                with torch.autocast(built.device.type, dtype=amp) if amp else contextlib.nullcontext():
                    return method(images).float()

        return call

    feature_functions = {"dense": frozen(backbone.features), "image": frozen(image_feature_method(backbone))}

    from dssl.evaluators.extraction import feature_cache

    results = []
    # Evaluators that extract the same frozen features (same dataset, split, sizes, dtype) share one pass.
    with _eval_mode(backbone), feature_cache():
        for name in config.evaluators:
            entry = host.get("evaluator", name)
            evaluator = entry.load()(_options(entry, config.evaluator_options.get(name, {})))
            started = time.perf_counter()
            with StageProgress(name, console=console) as progress:
                result = evaluator.evaluate(
                    features=feature_functions[getattr(evaluator, "feature_kind", "dense")],
                    train=built.eval_train,
                    val=built.eval_val,
                    dataset_name=(config.eval_dataset or config.dataset).name,
                    device=built.device,
                    progress=progress,
                )
            if result.seconds is None:
                result.seconds = time.perf_counter() - started
            if tracker is not None:
                tracker.log_evaluation(result)
                host.hook.dssl_evaluation_finished(run=info or RunInfo(), result=result)
            results.append(result)
    return results


def _signed_gain(delta: float, direction: str) -> str:
    """``+1.23`` in green when the change is an improvement in the metric's direction, red otherwise."""
    better = delta > 0 if direction == "higher" else delta < 0
    colour = "green" if better else ("red" if delta != 0 else "default")
    return f"[{colour}]{delta:+.2f}[/{colour}]"


def evaluate_baselines(built: BuiltRun, host: PluginHost, *, console: Any = None) -> dict[str, list[EvaluationResult]]:
    """Evaluate the run's ``baselines`` with its evaluators: ``start`` and/or ``random``.

    ``start`` is the evaluated network as training found it (the ``--init`` weights); ``random`` is the same
    architecture at random init with the run's seed. When the run itself starts from random init the two are
    the same network, evaluated once and reported as ``start``.
    """
    from dssl.engine.seeding import seed_everything

    config = built.config
    results: dict[str, list[EvaluationResult]] = {}
    for name in config.baselines:
        if name == "random" and built.init == "random":
            if "start" in config.baselines:
                continue
            name = "start"
        if name == "start":
            assert built.start_backbone is not None  # kept by build_run when baselines ask for it
            backbone = built.start_backbone
        else:
            # After training, so re-seeding cannot change the run: the weights a random-init run would start from.
            seed_everything(config.seed)
            fresh = build_backbone(config, host)
            objective_entry = host.get("objective", config.objective.name)
            objective = objective_entry.load()(
                fresh, _options(objective_entry, config.objective.options), total_steps=config.optim.steps
            )
            backbone = objective.eval_backbone().to(built.device)
        results[name] = evaluate_backbone(built, host, backbone=backbone, console=console)
    return results


def image_feature_method(backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``backbone.image_features`` when the backbone defines one (e.g. STELLAR's sparse-token mean), else
    the final ``[CLS]`` token."""
    method = getattr(backbone, "image_features", None)
    if callable(method):
        return method
    return lambda images: backbone(images).cls


def print_results(results: RunResults, console: Any) -> None:
    """The results table; with baselines, the trained numbers beside the start's and random init's, and the
    supervised ceiling when ``registry.yaml`` holds one measured for this backbone, data and budget."""
    from rich.table import Table

    from dssl.catalogue import load_catalogue

    baseline_names = [n for n in ("start", "random") if n in results.baselines]
    # A run that started from random init has one baseline for both: its start.
    from_random = (results.init or "").startswith("init: random")
    headers = {"start": "start (random init)" if from_random else "start", "random": "random init"}
    baseline_values = {
        name: {f"{e.evaluator}/{m}": v.value for e in results.baselines[name] for m, v in e.metrics.items()}
        for name in baseline_names
    }
    ceilings: dict[tuple[str, str], float] = {}
    if baseline_names:
        config = results.config
        ceilings = load_catalogue().supervised_ceiling(
            backbone=str(config.get("backbone", {}).get("name")),
            dataset=str((config.get("eval_dataset") or config.get("dataset") or {}).get("name")),
            steps=int(config.get("optim", {}).get("steps", 0)),
        )
    table = Table(title="results", title_justify="left")
    for column in ("evaluator", "protocol", "dataset", "metric", "trained" if baseline_names else "value"):
        table.add_column(column)
    for name in baseline_names:
        table.add_column(headers[name], justify="right")
        if name == "start":
            table.add_column("Δ vs start", justify="right")
    if ceilings:
        table.add_column("supervised", justify="right")
    table.add_column("better")
    for evaluation in results.evaluations:
        for metric, value in evaluation.metrics.items():
            shown = f"{value.value:.2f}" + (f" ± {value.std:.2f} (n={value.n})" if value.std is not None else "")
            row = [evaluation.evaluator, evaluation.protocol_id, evaluation.dataset, metric, shown]
            for name in baseline_names:
                reference = baseline_values[name].get(f"{evaluation.evaluator}/{metric}")
                row.append("—" if reference is None else f"{reference:.2f}")
                if name == "start":
                    row.append("—" if reference is None else _signed_gain(value.value - reference, value.direction))
            if ceilings:
                ceiling = ceilings.get((evaluation.protocol_id, f"{evaluation.evaluator}/{metric}"))
                row.append("—" if ceiling is None else f"{ceiling:.2f}")
            table.add_row(*row, value.direction)
    console.print(table)
    if ceilings:
        console.print(
            "supervised: the same backbone trained from random init for the same steps with the masks as labels "
            "(a measured ceiling, registry.yaml references; benchmarks/supervised_ceiling.py)"
        )
    if results.run.output_dir:
        console.print(f"results: {Path(results.run.output_dir) / 'results.json'}")
    if results.run.run_id:
        console.print(f"MLflow run {results.run.run_id} in {results.run.tracking_uri}")
