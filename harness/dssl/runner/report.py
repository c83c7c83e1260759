"""The results table a run prints: every metric with its protocol, beside the baselines' numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dssl.results import RunResults


def _signed_gain(delta: float, direction: str) -> str:
    """``+1.23`` in green when the change is an improvement in the metric's direction, red otherwise."""
    better = delta > 0 if direction == "higher" else delta < 0
    colour = "green" if better else ("red" if delta != 0 else "default")
    return f"[{colour}]{delta:+.2f}[/{colour}]"


def print_results(results: RunResults, console: Any) -> None:
    """The results table; with baselines, the trained numbers beside the start's and random init's."""
    from rich.table import Table

    baseline_names = [n for n in ("start", "random") if n in results.baselines]
    # A run that started from random init has one baseline for both: its start.
    from_random = (results.init or "").startswith("init: random")
    headers = {"start": "start (random init)" if from_random else "start", "random": "random init"}
    baseline_values = {
        name: {f"{e.evaluator}/{m}": v.value for e in results.baselines[name] for m, v in e.metrics.items()}
        for name in baseline_names
    }
    table = Table(title="results", title_justify="left")
    for column in ("evaluator", "protocol", "dataset", "metric", "trained" if baseline_names else "value"):
        table.add_column(column)
    for name in baseline_names:
        table.add_column(headers[name], justify="right")
        if name == "start":
            table.add_column("Δ vs start", justify="right")
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
            table.add_row(*row, value.direction)
    console.print(table)
    if results.run.output_dir:
        console.print(f"results: {Path(results.run.output_dir) / 'results.json'}")
    if results.run.run_id:
        console.print(f"MLflow run {results.run.run_id} in {results.run.tracking_uri}")
