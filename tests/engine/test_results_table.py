"""The results table a run prints: trained numbers beside the start, random init and a measured ceiling."""

from __future__ import annotations

import re

import pytest
from dssl.catalogue import SUPERVISED_CEILING, Catalogue, load_catalogue
from dssl.results import EvaluationResult, MetricValue, RunResults
from dssl.runner import print_results
from rich.console import Console


def _evaluation(miou: float) -> EvaluationResult:
    return EvaluationResult(
        evaluator="linear_seg",
        protocol="linear_seg",
        protocol_version=1,
        dataset="embedded",
        metrics={"miou": MetricValue(value=miou)},
    )


def _results(**changes: object) -> RunResults:
    config = {"backbone": {"name": "vit_cpu8"}, "dataset": {"name": "embedded"}, "optim": {"steps": 250}}
    fields = {
        "config": config,
        "init": "init from warmstarts/x.pt: 60 tensors loaded",
        "evaluations": [_evaluation(9.5)],
        "baselines": {"start": [_evaluation(8.25)], "random": [_evaluation(4.75)]},
    }
    return RunResults(**(fields | changes))


def _printed(results: RunResults) -> str:
    console = Console(record=True, width=200)
    print_results(results, console)
    return console.export_text()


def test_trained_numbers_stand_beside_the_start_and_random_init() -> None:
    config = {"backbone": {"name": "vit_cpu8"}, "dataset": {"name": "embedded"}, "optim": {"steps": 150}}
    text = _printed(_results(config=config))
    row = next(line for line in text.splitlines() if "miou" in line)
    cells = re.split(r"\s{2,}", row.strip())
    assert cells == ["linear_seg@1", "miou ↑", "9.50", "8.25", "+1.25", "4.75"]
    assert "results on embedded" in text and "Δ vs start" in text and "random init" in text
    assert "supervised" not in text  # no ceiling measured at 150 steps or fewer


def test_the_table_fits_an_80_column_terminal() -> None:
    console = Console(record=True, width=80)
    print_results(_results(), console)
    table = console.export_text().split("±")[0].split("supervised")[0]
    assert "…" not in table and "9.50" in table and "4.75" in table


def test_a_run_from_random_init_has_one_start_column() -> None:
    results = _results(init="init: random (no checkpoint)", baselines={"start": [_evaluation(4.75)]})
    table = _printed(results).split("supervised ceiling")[0]  # the ceiling's note names random init too
    assert "start (random init)" in table and "random init " not in table.replace("start (random init)", "")


def test_a_measured_ceiling_for_this_budget_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_catalogue().model_dump()
    ceiling = {
        "method": SUPERVISED_CEILING,
        "backbone": "vit_cpu8",
        "dataset": "embedded",
        "protocol": "linear_seg@1",
        "metric": "linear_seg/miou",
        "value": 27.5,
        "steps": 250,
        "source": "a test",
    }
    catalogue = Catalogue.model_validate(data | {"references": [*data["references"], ceiling]})
    monkeypatch.setattr("dssl.catalogue.load_catalogue", lambda *a, **k: catalogue)
    assert "supervised ceiling, linear_seg@1 miou: 27.50" in _printed(_results())
    # Another budget: the ceiling does not apply.
    other = _results(config={"backbone": {"name": "vit_cpu8"}, "dataset": {"name": "embedded"}, "optim": {"steps": 9}})
    assert "27.50" not in _printed(other)


def test_without_baselines_the_table_is_the_plain_one() -> None:
    text = _printed(_results(baselines={}))
    assert "value" in text and "Δ vs start" not in text


def _with_ceilings(monkeypatch: pytest.MonkeyPatch, *values_steps: tuple[float, int]) -> None:
    data = load_catalogue().model_dump()
    ceilings = [
        {
            "method": SUPERVISED_CEILING,
            "backbone": "vit_cpu8",
            "dataset": "embedded",
            "protocol": "linear_seg@1",
            "metric": "linear_seg/miou",
            "value": value,
            "steps": steps,
            "source": "a test",
        }
        for value, steps in values_steps
    ]
    references = [r for r in data["references"] if r["method"] != SUPERVISED_CEILING]
    catalogue = Catalogue.model_validate(data | {"references": [*references, *ceilings]})
    monkeypatch.setattr("dssl.catalogue.load_catalogue", lambda *a, **k: catalogue)


def test_a_run_from_the_warm_start_is_held_against_the_ceiling_of_its_total_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The network had the warm start's steps before this run's: a ceiling "for the same steps" counts them.
    warm = load_catalogue().warmstart_for("warmstart", "vit_cpu8")
    assert warm is not None and warm.steps() == 2000
    config = {"backbone": {"name": "vit_cpu8", "init": "warmstart"}, "dataset": {"name": "embedded"}}
    _with_ceilings(monkeypatch, (27.5, 200), (43.0, 2000), (57.5, 6000))

    main_job = _printed(_results(config=config | {"optim": {"steps": 200}}))
    assert "27.50" not in main_job and "57.50" not in main_job
    assert "supervised ceiling, linear_seg@1 miou: 43.00" in main_job
    assert "for 2000 steps; this network trained 2200 (2000 of its warm start + 200)" in " ".join(main_job.split())

    exact = _printed(_results(config=config | {"optim": {"steps": 4000}}))
    assert "supervised ceiling, linear_seg@1 miou: 57.50" in exact
    assert "for as many steps as this network trained" in " ".join(exact.split())


def test_a_start_of_unknown_training_gets_no_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_ceilings(monkeypatch, (27.5, 200), (43.0, 2000))
    config = {"backbone": {"name": "vit_cpu8", "init": "/data/some.pt"}, "dataset": {"name": "embedded"}}
    assert "supervised" not in _printed(_results(config=config | {"optim": {"steps": 2000}}))
