"""Which runs a report covers, and their metrics grouped per method, backbone and protocol."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dssl.errors import UsageError
from dssl.tracking.leaderboard import METHOD_TAG, search_all_runs

#: MLflow's tag naming a nested run's parent.
PARENT_TAG = "mlflow.parentRunId"
#: Tag of the run a report of a whole experiment is logged to.
REPORT_TAG = "dssl.report"


@dataclass
class Selection:
    """The runs of a report and where it is logged.

    Attributes:
        title: What the report is about (experiment name, grid or run name).
        experiment_id: The MLflow experiment of the runs.
        runs: Finished benchmark runs (with ``objective`` and ``backbone`` params), oldest first.
        attach_run_id: The run the report is logged to; ``None``: a new report run in the experiment.
    """

    title: str
    experiment_id: str
    runs: list[Any]
    attach_run_id: str | None


@dataclass
class MetricGroup:
    """One bar of a metric plot: a method on a backbone, mean ± std over its runs (seeds)."""

    method: str
    backbone: str
    values: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.method}\n{self.backbone}"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def method_of(run: Any) -> str:
    """The method's leaderboard name: the ``dssl.method`` tag (``cotap+oaf``), else the objective param."""
    return run.data.tags.get(METHOD_TAG) or run.data.params.get("objective", "?")


def _is_benchmark_run(run: Any) -> bool:
    return run.info.status == "FINISHED" and bool(run.data.params.get("objective") and run.data.params.get("backbone"))


def select_runs(client: Any, target: str) -> Selection:
    """Resolve ``target``: a run id (a grid's parent run covers its cells) or an experiment name.

    Raises:
        UsageError: Nothing by that name, or no finished benchmark run in it.
    """
    from mlflow.exceptions import MlflowException

    run = None
    try:
        run = client.get_run(target)
    except MlflowException:
        run = None
    if run is not None:
        experiment_id = run.info.experiment_id
        children = _search(client, experiment_id, f"tags.`{PARENT_TAG}` = '{target}'")
        runs = [r for r in children if _is_benchmark_run(r)] if children else [run]
        title = run.data.tags.get("mlflow.runName") or target
        selection = Selection(title, experiment_id, runs, target)
    else:
        experiment = client.get_experiment_by_name(target)
        if experiment is None:
            raise UsageError(f"no MLflow run or experiment named {target!r} in this tracking store")
        runs = [r for r in _search(client, experiment.experiment_id, "") if _is_benchmark_run(r)]
        selection = Selection(target, experiment.experiment_id, runs, None)
    selection.runs = [r for r in selection.runs if _is_benchmark_run(r)]
    if not selection.runs:
        raise UsageError(f"{target!r} has no finished benchmark run (a run with objective and backbone params)")
    selection.runs.sort(key=lambda r: r.info.start_time or 0)
    return selection


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    return list(search_all_runs(client, [experiment_id], filter_string))


def metric_groups(runs: Sequence[Any]) -> dict[tuple[str, str], list[MetricGroup]]:
    """Final evaluation metrics per ``(protocol id, metric)``, one group per (method, backbone).

    Only metrics of evaluators with a ``dssl.protocol.<evaluator>`` tag count (training metrics and
    ``*_std`` companions do not); diagnostics are kept, since a report shows them too.
    """
    sections: dict[tuple[str, str], dict[tuple[str, str], MetricGroup]] = {}
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        for key, value in metrics.items():
            evaluator, sep, name = key.partition("/")
            if not sep or evaluator == "train" or (name.endswith("_std") and key[: -len("_std")] in metrics):
                continue
            protocol = tags.get(f"dssl.protocol.{evaluator}")
            if protocol is None:
                continue
            group_key = (method_of(run), run.data.params["backbone"])
            groups = sections.setdefault((protocol, key), {})
            groups.setdefault(group_key, MetricGroup(*group_key)).values.append(float(value))
    return {section: list(groups.values()) for section, groups in sorted(sections.items())}


def representatives(runs: Sequence[Any]) -> list[Any]:
    """One run per (method, backbone): the one with the lowest seed (its backbone is shown in image grids)."""
    chosen: dict[tuple[str, str], Any] = {}
    for run in runs:
        key = (method_of(run), run.data.params["backbone"])
        seed = _seed(run)
        if key not in chosen or seed < _seed(chosen[key]):
            chosen[key] = run
    return list(chosen.values())


def _seed(run: Any) -> int:
    try:
        return int(run.data.params.get("seed", 0))
    except ValueError:
        return 0
