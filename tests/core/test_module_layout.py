"""Smaller rooms: a benchmark run and a grid are split by responsibility, one job per module, and ``dssl.runner``
stays the façade of every name the harness, its tests and the benchmarks import from it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Module -> its one job; each stays well below the 700-900 lines the single runner modules had grown to.
JOBS = {
    "dssl.runner.build": "a configuration's components, built and validated",
    "dssl.runner.training": "the engine's loader and trainer, checkpoints, the profiler",
    "dssl.runner.evaluation": "frozen features through the evaluators, baselines",
    "dssl.runner.report": "the results table",
    "dssl.runner.tracking": "params, tags, descriptions of a run",
    "dssl.runner.execute": "one run from start to end",
    "dssl.runner.resume": "an interrupted run continued",
    "dssl.grid.plan": "the cells resolved, done and resumable ones found",
    "dssl.grid.launch": "one cell run and its outcome recorded",
    "dssl.grid.leaderboard": "the grid leaderboard",
    "dssl.grid.runner": "a grid from start to end",
}
MAX_LINES = 400


@pytest.mark.parametrize("module", sorted(JOBS))
def test_each_module_has_one_job_and_stays_small(module):
    path = Path(importlib.import_module(module).__file__)
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: {JOBS[module]} only"


def test_the_runner_facade_exports_every_name_imported_from_it():
    import dssl.runner

    imported: set[str] = set()
    for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "dssl.runner":
                imported |= {alias.name for alias in node.names}
    assert {"BuiltRun", "build_run", "run_bench", "evaluate_backbone", "training_batches"} <= imported
    missing = sorted(name for name in imported if not hasattr(dssl.runner, name))
    assert not missing, f"dssl.runner no longer exports {missing}"
