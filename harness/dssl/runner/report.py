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
    """The results table; with baselines, the trained numbers beside the start's and random init's, and the
    supervised ceiling when ``registry.yaml`` holds one measured for this backbone, data and budget."""
    from rich import box
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
    ceilings: dict[tuple[str, str], tuple[float, int]] = {}
    config = results.config
    steps = int(config.get("optim", {}).get("steps", 0))
    backbone = str(config.get("backbone", {}).get("name"))
    init = str(config.get("backbone", {}).get("init", "random"))
    catalogue = load_catalogue()
    earlier = catalogue.steps_before(init=init, backbone=backbone) if baseline_names else None
    if earlier is not None:
        ceilings = catalogue.supervised_ceiling(
            backbone=backbone,
            dataset=str((config.get("eval_dataset") or config.get("dataset") or {}).get("name")),
            steps=earlier + steps,
        )
    # Fits an 80-column terminal: the evaluator is in the protocol id, the direction an arrow on the metric, and
    # the dataset in the title when every evaluation used the same one.
    datasets = sorted({evaluation.dataset for evaluation in results.evaluations})
    title = f"results on {datasets[0]}" if len(datasets) == 1 else "results"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True
    )
    columns = ["protocol", *(["dataset"] if len(datasets) > 1 else []), "metric"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    table.add_column("trained" if baseline_names else "value", justify="right", no_wrap=True)
    for name in baseline_names:
        table.add_column(headers[name], justify="right", no_wrap=True)
        if name == "start":
            table.add_column("Δ vs start", justify="right", no_wrap=True)
    for evaluation in results.evaluations:
        for metric, value in evaluation.metrics.items():
            shown = f"{value.value:.2f}" + (f"±{value.std:.2f}" if value.std is not None else "")
            arrow = "↑" if value.direction == "higher" else "↓"
            row = [evaluation.protocol_id, *([evaluation.dataset] if len(datasets) > 1 else []), f"{metric} {arrow}"]
            row.append(shown)
            for name in baseline_names:
                reference = baseline_values[name].get(f"{evaluation.evaluator}/{metric}")
                row.append("—" if reference is None else f"{reference:.2f}")
                if name == "start":
                    row.append("—" if reference is None else _signed_gain(value.value - reference, value.direction))
            table.add_row(*row)
    console.print(table)
    if any(value.std is not None for e in results.evaluations for value in e.metrics.values()):
        console.print("±: std over the evaluator's own repeats (k-means restarts)")
    for (protocol_id, metric), (ceiling, ceiling_steps) in sorted(ceilings.items()):
        if any(e.protocol_id == protocol_id for e in results.evaluations):
            total = (earlier or 0) + steps
            budget = (
                "for as many steps as this network trained"
                if ceiling_steps == total
                else f"for {ceiling_steps} steps; this network trained {total}"
                + (f" ({earlier} of its warm start + {steps})" if earlier else "")
                + ", and the ceiling grows with steps"
            )
            console.print(
                f"supervised ceiling, {protocol_id} {metric.split('/', 1)[-1]}: [bold]{ceiling:.2f}[/bold] (the same "
                f"backbone trained from random init with the masks as labels {budget}; registry.yaml references, "
                "benchmarks/cpu_track_targets.py)"
            )
    if results.run.output_dir:
        console.print(f"results: {Path(results.run.output_dir) / 'results.json'}")
    if results.run.run_id:
        console.print(f"MLflow run {results.run.run_id} in {results.run.tracking_uri}")
