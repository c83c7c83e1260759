"""Run a grid: resolve every cell, skip the finished ones, run the rest as child runs, end with a leaderboard.

The grid is one MLflow parent run (named after the grid, tag ``dssl.grid``) with one child run per cell.
Its parts: :mod:`dssl.grid.plan` resolves every cell up front and finds the done and resumable ones;
:mod:`dssl.grid.launch` runs a cell (in this process, a spawned one, or a submitit job) and records its
outcome; :mod:`dssl.grid.leaderboard` aggregates the finished cells into the grid leaderboard. A failing
cell is recorded as a ``FAILED`` child run (tag ``dssl.error``) and the grid goes on; the grid then ends
with :class:`~dssl.errors.RunFailedError`.

The ``also_evaluate_on`` cells run after all the others, each on the weights its cell trained
(:func:`~dssl.grid.plan.bind_trained_weights`); one whose cell did not finish fails without running.

The grid's evaluators replace a preset's: evaluator options that a preset gives for evaluators the grid
does not run (e.g. STELLAR's ``gpu`` preset configures ``knn`` and ``linear_cls``) are left out.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from dssl.errors import RunFailedError, UsageError
from dssl.grid.launch import cell_executor, run_in_process, run_spawned, run_submitit
from dssl.grid.leaderboard import (
    LEADERBOARD_JSON,
    LEADERBOARD_MD,
    grid_description,
    grid_rows,
    print_grid,
    render_grid_markdown,
    row_json,
)
from dssl.grid.plan import GRID_TAG, GridOutcome, PlannedCell, bind_trained_weights, plan_grid, render_dry_run
from dssl.grid.spec import GridSpec, LauncherSpec

if TYPE_CHECKING:
    from rich.console import Console

    from dssl.host import PluginHost

__all__ = ["plan_grid", "render_dry_run", "run_grid"]


def run_grid(
    spec: GridSpec,
    *,
    host: PluginHost,
    tracking_uri: str,
    experiment: str,
    data_root: str | None = None,
    parallel: int = 1,
    source: str | Path | None = None,
    disabled: Sequence[str] = (),
    strict: bool = False,
    console: Console | None = None,
    out: Console | None = None,
    launcher: LauncherSpec | None = None,
) -> GridOutcome:
    """Run the grid's pending cells as child runs of one parent run and log the grid leaderboard.

    Args:
        spec: The validated grid (its ``name`` is set).
        host: Plugin host.
        tracking_uri: MLflow tracking URI.
        experiment: MLflow experiment.
        data_root: Folder of the real datasets.
        parallel: Cells run at once; above 1 each cell runs in its own spawned process.
        source: The grid file, named in error messages.
        disabled: Plugin distributions to skip in the cells' processes (``--disable-plugin``).
        strict: Fail on any plugin that does not load, in the cells' processes (``--strict-plugins``).
        console: Where progress goes (stderr by default).
        out: Where the leaderboard table goes (stdout by default).
        launcher: Where the cells run; default: the grid file's ``launcher`` (local).

    Returns:
        The outcome; raises instead when a cell failed.

    Raises:
        ConfigError: A cell does not resolve (nothing is run then).
        RunFailedError: At least one cell failed (after all cells ran and the leaderboard was logged).
    """
    from rich.console import Console
    from rich.markup import escape

    from dssl.tracking.mlflow_tracker import MlflowTracker, nested_runs

    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1 (got {parallel})")
    from dssl.tracking.mlflow_tracker import check_tracking_access

    console = console or Console(stderr=True)
    out = out or Console(width=max(100, shutil.get_terminal_size((120, 24)).columns))
    name = spec.name or "grid"
    check_tracking_access(tracking_uri)  # a refused password is a usage error before any cell runs
    cells = plan_grid(
        spec, host=host, tracking_uri=tracking_uri, experiment=experiment, data_root=data_root, source=source
    )
    pending = [c for c in cells if c.status == "pending"]
    console.print(
        f"[bold]dssl grid[/] {name}: {len(cells)} cells, {len(cells) - len(pending)} done, {len(pending)} to run"
        + (f", {parallel} at a time" if parallel > 1 and pending else "")
    )
    for item in cells:
        if item.status == "done":
            item.status = "skipped"
            console.print(escape(f"  {item.title}: {item.report}"), soft_wrap=True)

    with nested_runs(None):  # the grid's own run is top-level, whatever the environment says
        parent = MlflowTracker(tracking_uri=tracking_uri, experiment=experiment, run_name=name, tags={GRID_TAG: name})
    outcome = GridOutcome(name=name, parent_run_id=None, cells=cells)
    with parent:
        outcome.parent_run_id = parent.run_id
        parent.log_params(
            {
                "grid": name,
                "cells": len(cells),
                "objectives": [e.key for e in spec.objectives],
                "checkpoints": [e.label for e in spec.checkpoints],
                "backbones": [e.key for e in spec.backbones],
                "datasets": [e.key for e in spec.datasets],
                "evaluators": spec.evaluators,
                "also_evaluate_on": [e.dataset.key for e in spec.also_evaluate_on],
                "seeds": spec.seeds,
            }
        )
        parent.log_dict(spec.model_dump(mode="json", exclude_none=True), "grid.yaml")
        launcher = launcher or spec.launcher
        if launcher.name == "submitit":
            runner = functools.partial(run_submitit, launcher=launcher)
            # Jobs queue on the cluster: submit every cell at once unless --parallel limits it.
            parallel = parallel if parallel > 1 else max(1, len(pending))
        else:
            runner = run_spawned if parallel > 1 else run_in_process
        plugins = {"disabled": tuple(disabled), "strict": strict}
        execute = cell_executor(runner, parent.run_id, name, host, tracking_uri, experiment, plugins, console)
        # Cells that train (and evaluate) first; then the also_evaluate_on cells, on the weights trained.
        first = [item for item in pending if item.cell.evaluates is None]
        _execute_all(first, execute, parallel)
        then = []
        for item in pending:
            if item.cell.evaluates is not None:
                if bind_trained_weights(item, cells[item.cell.evaluates], tracking_uri=tracking_uri):
                    then.append(item)
                else:
                    console.print(escape(f"  {item.title}: {item.report}"), soft_wrap=True)
        _execute_all(then, execute, parallel)

        outcome.rows = grid_rows(cells, tracking_uri=tracking_uri)
        counts = {s: sum(c.status == s for c in cells) for s in ("finished", "skipped", "failed")}
        parent.set_tags({f"dssl.grid.{k}": str(v) for k, v in counts.items()})
        parent.log_dict({"grid": name, "rows": [row_json(r) for r in outcome.rows]}, LEADERBOARD_JSON)
        grid_markdown = render_grid_markdown(outcome)
        parent.log_text(grid_markdown, LEADERBOARD_MD)
        parent.set_description(grid_description(spec, grid_markdown))
        print_grid(outcome, out)
        from dssl.tracking.browse import log_leaderboard
        from dssl.tracking.leaderboard import collect_rows

        board = log_leaderboard(
            tracking_uri, experiment, collect_rows(tracking_uri=tracking_uri, experiment=experiment)
        )
        console.print(escape(f"leaderboard of experiment {experiment}: run {board} (dssl leaderboard --log)"))
        if outcome.failed:
            listed = "; ".join(f"{c.title}: {c.error}" for c in outcome.failed)
            raise RunFailedError(f"{len(outcome.failed)} of {len(cells)} grid cells failed: {listed}")
    return outcome


def _execute_all(items: Sequence[PlannedCell], execute: Callable[[PlannedCell, int], None], parallel: int) -> None:
    """Run ``items`` one after another, or ``parallel`` at a time."""
    if parallel > 1:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dssl-grid") as pool:
            list(pool.map(lambda item: execute(item, parallel), items))
    else:
        for item in items:
            execute(item, 1)
