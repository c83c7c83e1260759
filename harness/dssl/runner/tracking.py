"""What a run logs besides its metrics: params, tags, descriptions, dataset inputs, skipped images.

:func:`open_tracker` gives the MLflow tracker of a configuration (a :class:`NoTracker` when tracking is off);
:func:`start_logging` writes what identifies the run before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dssl.config import RunConfig
from dssl.results import RunInfo
from dssl.runner.build import BuiltRun, resolve_data_root
from dssl.tracking.browse import dataset_inputs, run_description
from dssl.tracking.leaderboard import EVALUATION_ONLY_TAG, METHOD_TAG, ROW_KEY_TAG
from dssl.tracking.mlflow_tracker import OUTPUT_DIR_TAG

#: Written into a run's folder by its training loader: the training images it could not decode and skipped.
BAD_IMAGES_FILE = "bad_images.txt"
#: Tags of a run that skipped unreadable training images: how many files, and the first few names.
BAD_IMAGES_TAG = "dssl.bad_images"
BAD_IMAGES_FIRST_TAG = "dssl.bad_images.first"


#: Written into a run's folder when it starts: its MLflow identity, so that ``--resume FOLDER`` (and ``dssl sync``)
#: finds the run.
RUN_INFO_FILE = "run.json"


class NoTracker:
    """Stands in for MLflow when tracking is disabled."""

    run_id: str | None = None

    def __enter__(self) -> NoTracker:
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


def open_tracker(config: RunConfig, *, resume_run_id: str | None = None, label: str | None = None) -> Any:
    """The run's MLflow tracker (a new run, or ``resume_run_id``); a :class:`NoTracker` when tracking is off."""
    if not config.tracking.enabled:
        return NoTracker()
    from dssl.tracking.mlflow_tracker import MlflowTracker

    what = f"eval-{label}" if label is not None else config.objective.name
    return MlflowTracker(
        tracking_uri=config.tracking.uri,
        experiment=config.tracking.experiment,
        run_name=config.tracking.run_name or f"{what}-{config.backbone.name}-s{config.seed}",
        resume_run_id=resume_run_id,
    )


def check_tracking(config: RunConfig) -> None:
    """Fail before anything is built when the tracking server refuses this process's credentials."""
    if config.tracking.enabled:
        from dssl.tracking.mlflow_tracker import check_tracking_access

        check_tracking_access(config.tracking.uri)


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


def notifier(console: Any) -> Callable[[str], None]:
    """One yellow line on ``console`` (not parsed as markup: paths and URLs print as they are)."""
    return lambda text: console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)


def report_bad_images(tracker: Any, run_dir: Path, console: Any) -> None:
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
    notifier(console)(
        f"skipped {len(skipped)} unreadable training images ({', '.join(first)}{more}); each was replaced by "
        f"the next readable image; listed in {log}"
    )


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


def start_logging(tracker: Any, built: BuiltRun, run_dir: Path) -> None:
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
