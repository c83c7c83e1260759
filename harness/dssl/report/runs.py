"""Which runs a report covers, and their metrics grouped as the leaderboard groups them.

A bar is one leaderboard row (:func:`dssl.tracking.leaderboard.aggregate_runs`): runs that differ only in the
seed, mean ± std over seeds, so that a report never draws runs of two budgets as one bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dssl.errors import UsageError
from dssl.tracking.leaderboard import METHOD_TAG, aggregate_runs, run_identity, search_all_runs

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
    """One bar of a metric plot: a leaderboard row, mean ± std over its seeds.

    Attributes:
        method: The method (``dssl.method`` tag or objective).
        backbone: The backbone.
        mean: Mean over seeds.
        std: Sample standard deviation over seeds (0 with one seed).
        n: Number of seeds.
        variant: What sets the bar apart from other bars of the same method and backbone (``steps=20``).
        run_ids: The runs behind the bar, one per seed, lowest seed first.
    """

    method: str
    backbone: str
    mean: float
    std: float = 0.0
    n: int = 1
    variant: str | None = None
    run_ids: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.method}\n{self.backbone}" + (f"\n{self.variant}" if self.variant else "")


def method_of(run: Any) -> str:
    """The method's leaderboard name: the ``dssl.method`` tag (``cotap+oaf``), else the objective param."""
    return run.data.tags.get(METHOD_TAG) or run.data.params.get("objective", "?")


def _is_benchmark_run(run: Any) -> bool:
    return run.info.status == "FINISHED" and run_identity(run) is not None


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
        raise UsageError(f"{target!r} has no finished benchmark run (a run with a method and a backbone param)")
    selection.runs.sort(key=lambda r: r.info.start_time or 0)
    return selection


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    return list(search_all_runs(client, [experiment_id], filter_string))


def metric_groups(runs: Sequence[Any], settings: Any = None) -> dict[tuple[str, str], list[MetricGroup]]:
    """Final evaluation metrics per ``(protocol id, metric)``, one group per leaderboard row.

    Only metrics of evaluators with a ``dssl.protocol.<evaluator>`` tag count (training metrics and
    ``*_std`` companions do not); diagnostics are kept, since a report shows them too.

    Args:
        runs: Finished benchmark runs.
        settings: ``(run, evaluator) -> settings`` for the variants (:func:`dssl.tracking.leaderboard.logged_settings`);
            the runs' params when ``None``.
    """
    sections: dict[tuple[str, str], list[MetricGroup]] = {}
    for row in aggregate_runs(runs, diagnostics=True, settings=settings):
        group = MetricGroup(
            method=row.method_text,
            backbone=row.backbone,
            mean=row.mean,
            std=row.std or 0.0,
            n=row.n_seeds,
            variant=row.variant,
            run_ids=list(row.run_ids),
        )
        sections.setdefault((row.protocol, row.metric), []).append(group)
    return {
        section: sorted(groups, key=lambda g: (g.method, g.backbone, g.variant or ""))
        for section, groups in sorted(sections.items())
    }


def representatives(runs: Sequence[Any], settings: Any = None) -> list[tuple[Any, str]]:
    """One run per leaderboard row (the lowest seed's), with the row's label: its backbone is shown in image grids.

    Returns:
        ``(run, label)`` pairs, the label ``"<method> <backbone>"`` plus the row's variant when it has one.
    """
    by_id = {run.info.run_id: run for run in runs}
    chosen: dict[str, str] = {}
    for groups in metric_groups(runs, settings).values():
        for group in groups:
            label = f"{group.method} {group.backbone}" + (f" [{group.variant}]" if group.variant else "")
            chosen.setdefault(group.run_ids[0], label)
    return [(by_id[run_id], label) for run_id, label in chosen.items()]
