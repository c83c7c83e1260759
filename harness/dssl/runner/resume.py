"""Resuming an interrupted run from its last checkpoint, in the same MLflow run."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dssl.config import RunConfig
from dssl.errors import ConfigError
from dssl.host import PluginHost
from dssl.results import RunInfo, RunResults
from dssl.runner.build import build_run
from dssl.runner.execute import execute_run
from dssl.runner.tracking import RUN_INFO_FILE, check_tracking, open_tracker
from dssl.tracking.mlflow_tracker import OUTPUT_DIR_TAG


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
        check_tracking(point.config)
    with PreemptionGuard(point.config.preempt_signals) as guard:
        built = build_run(point.config, host)
        tracker = open_tracker(point.config, resume_run_id=point.run_id)
        return execute_run(built, tracker, host, point.run_dir, console=console, resume=point, guard=guard)


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
