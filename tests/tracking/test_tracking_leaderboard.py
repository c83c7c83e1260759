"""Leaderboard over synthetic runs written with MlflowTracker."""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
import uuid
from pathlib import Path

import pytest
from dssl.results import EvaluationResult, MetricValue
from dssl.tracking.leaderboard import (
    METHOD_TAG,
    LeaderboardRow,
    collect_rows,
    filter_rows,
    reference_rows,
    render,
    sort_rows,
)
from dssl.tracking.mlflow_tracker import MlflowTracker

DINO_V1 = [40.0, 42.5, 45.25]  # linear_seg@1, seeds 0..2
COTAP_V1 = [50.0, 51.0]  # linear_seg@1, seeds 0..1 (seed 1 re-run: the first attempt scored 0)
REFERENCES = [
    {
        "method": "dino",
        "backbone": "vit_s16",
        "dataset": "voc",
        "protocol": "paper:linear_seg",
        "metric": "linear_seg/miou",
        "value": 38.8,
        "source": "DINO paper",
    },
    {
        "method": "leopart",
        "backbone": "vit_t16",
        "dataset": "voc",
        "protocol": "linear_seg@1",
        "metric": "linear_seg/miou",
        "value": 99.0,
        "source": "made-up",
    },
]


def _evaluation(
    evaluator: str,
    version: int,
    metric: str,
    value: float,
    direction: str = "higher",
    std: float | None = None,
) -> EvaluationResult:
    return EvaluationResult(
        evaluator=evaluator,
        protocol=evaluator,
        protocol_version=version,
        dataset="voc",
        metrics={metric: MetricValue(value=value, direction=direction, std=std)},  # type: ignore[arg-type]
    )


def _run(
    uri: str,
    experiment: str,
    *,
    objective: str,
    seed: int,
    evaluations: list[EvaluationResult],
    fail: bool = False,
    params: bool = True,
    tags: dict[str, str] | None = None,
) -> None:
    try:
        with MlflowTracker(tracking_uri=uri, experiment=experiment, tags=tags) as run:
            if params:
                run.log_params({"objective": objective, "backbone": "vit_t16", "dataset": "voc", "seed": seed})
            run.log_metrics({"train/loss": 1.0}, step=0)
            for evaluation in evaluations:
                run.log_evaluation(evaluation)
            if fail:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    time.sleep(0.002)  # distinct start times, so "latest run of a seed" is well defined


@pytest.fixture(scope="module")
def board(tracking_uri: str) -> tuple[str, str]:
    experiment = f"board-{uuid.uuid4().hex[:8]}"
    for seed, value in enumerate(DINO_V1):
        evals = [
            _evaluation("linear_seg", 1, "miou", value),
            _evaluation("depth", 1, "rmse", 0.5 + seed / 10, direction="lower"),
        ]
        _run(tracking_uri, experiment, objective="dino", seed=seed, evaluations=evals)
    _run(
        tracking_uri,
        experiment,
        objective="cotap",
        seed=1,
        evaluations=[_evaluation("linear_seg", 1, "miou", 0)],
    )
    for seed, value in enumerate(COTAP_V1):
        evals = [
            _evaluation("linear_seg", 1, "miou", value, std=3.0),
            _evaluation("depth", 1, "rmse", 0.3, direction="lower"),
        ]
        _run(tracking_uri, experiment, objective="cotap", seed=seed, evaluations=evals)
    # A newer protocol version of the same evaluator, with a number that would top the v1 table.
    _run(
        tracking_uri,
        experiment,
        objective="dino",
        seed=0,
        evaluations=[_evaluation("linear_seg", 2, "miou", 70)],
    )
    # Neither a failed run nor a run without objective/backbone params belongs on the board.
    _run(
        tracking_uri,
        experiment,
        objective="leak",
        seed=0,
        evaluations=[_evaluation("linear_seg", 1, "miou", 98)],
        fail=True,
    )
    _run(
        tracking_uri,
        experiment,
        objective="parent",
        seed=0,
        params=False,
        evaluations=[_evaluation("linear_seg", 1, "miou", 97)],
    )
    return tracking_uri, experiment


def _by(rows: list[LeaderboardRow], objective: str, protocol: str, metric: str) -> LeaderboardRow:
    [row] = [r for r in rows if (r.objective, r.protocol, r.metric) == (objective, protocol, metric)]
    return row


def test_grouping_over_seeds(board: tuple[str, str]) -> None:
    uri, experiment = board
    rows = collect_rows(tracking_uri=uri, experiment=experiment)
    assert {r.objective for r in rows} == {"dino", "cotap"}
    assert len(rows) == 5  # dino+cotap x {linear_seg@1, depth@1} + dino linear_seg@2
    dino = _by(rows, "dino", "linear_seg@1", "linear_seg/miou")
    assert dino.n_seeds == 3 and len(dino.run_ids) == 3
    assert dino.mean == pytest.approx(statistics.mean(DINO_V1))
    assert dino.std == pytest.approx(statistics.stdev(DINO_V1))
    assert (dino.backbone, dino.dataset, dino.direction, dino.reference) == (
        "vit_t16",
        "voc",
        "higher",
        False,
    )
    cotap = _by(rows, "cotap", "linear_seg@1", "linear_seg/miou")
    assert cotap.n_seeds == 2 and cotap.mean == pytest.approx(statistics.mean(COTAP_V1))  # re-run replaced 0
    assert cotap.std == pytest.approx(statistics.stdev(COTAP_V1))  # over seeds, not the evaluator's std
    single = _by(rows, "dino", "linear_seg@2", "linear_seg/miou")
    assert single.n_seeds == 1 and single.std is None and single.mean == 70
    assert not any(r.metric.endswith("_std") or r.metric.startswith("train/") for r in rows)


def test_sections_and_directions(board: tuple[str, str]) -> None:
    uri, experiment = board
    rows = sort_rows(collect_rows(tracking_uri=uri, experiment=experiment) + reference_rows(REFERENCES))
    sections = [r.section for r in rows]
    # Each section is one contiguous block: protocol versions are never interleaved.
    blocks = [s for i, s in enumerate(sections) if i == 0 or s != sections[i - 1]]
    assert len(blocks) == len(set(blocks)) == 4
    assert blocks[-1] == ("linear_seg/miou", "paper:linear_seg", "voc", "")  # paper-only section last
    v1 = [r for r in rows if r.protocol == "linear_seg@1" and r.metric == "linear_seg/miou"]
    assert [(r.objective, r.rank) for r in v1] == [("leopart", None), ("cotap", 1), ("dino", 2)]
    assert v1[0].reference
    v2 = [r for r in rows if r.protocol == "linear_seg@2"]
    assert [(r.objective, r.rank) for r in v2] == [("dino", 1)]  # 70 is not ranked against v1's 50.5
    depth = [r for r in rows if r.metric == "depth/rmse"]
    assert [r.objective for r in depth] == ["cotap", "dino"] and depth[0].direction == "lower"
    assert depth[0].mean < depth[1].mean and [r.rank for r in depth] == [1, 2]


def test_ties_share_a_rank() -> None:
    rows = [LeaderboardRow(o, "b", "d", "p@1", "e/m", v, None, 1) for o, v in [("a", 1.0), ("b", 2.0), ("c", 2.0)]]
    assert [(r.objective, r.rank) for r in sort_rows(rows)] == [("b", 1), ("c", 1), ("a", 3)]


def test_filters(board: tuple[str, str]) -> None:
    uri, experiment = board
    both = collect_rows(tracking_uri=uri, experiment=experiment, protocol="linear_seg")
    assert {r.protocol for r in both} == {"linear_seg@1", "linear_seg@2"}
    only_v2 = collect_rows(tracking_uri=uri, experiment=experiment, protocol="linear_seg@2")
    assert [(r.objective, r.protocol) for r in only_v2] == [("dino", "linear_seg@2")]
    depth = collect_rows(tracking_uri=uri, experiment=experiment, metric="rmse")
    assert {r.metric for r in depth} == {"depth/rmse"}
    assert collect_rows(tracking_uri=uri, experiment=experiment, metric="depth/rmse") == depth
    refs = reference_rows(REFERENCES)
    assert filter_rows(refs, protocol="linear_seg") == [refs[1]]  # "paper:linear_seg" is another protocol


def test_all_experiments_and_missing_stores(board: tuple[str, str], tmp_path: Path) -> None:
    uri, experiment = board
    everything = collect_rows(tracking_uri=uri)
    assert (
        len(
            [
                r
                for r in everything
                if set(r.run_ids)
                & {i for row in collect_rows(tracking_uri=uri, experiment=experiment) for i in row.run_ids}
            ]
        )
        == 5
    )
    assert collect_rows(tracking_uri=uri, experiment="no-such-experiment") == []
    missing = tmp_path / "nothing.db"
    assert collect_rows(tracking_uri=f"sqlite:///{missing}") == []
    assert not missing.exists()  # reading never creates a store


def test_reference_rows() -> None:
    rows = reference_rows(REFERENCES)
    assert all(r.reference and r.n_seeds == 1 and r.std is None for r in rows)
    assert rows[0].objective == "dino" and rows[0].source == "DINO paper" and rows[0].mean == 38.8
    with pytest.raises(Exception, match="lacks value"):
        reference_rows([{k: v for k, v in REFERENCES[0].items() if k != "value"}])


def test_render_formats(board: tuple[str, str]) -> None:
    uri, experiment = board
    rows = collect_rows(tracking_uri=uri, experiment=experiment) + reference_rows(REFERENCES)
    n = len(rows)

    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert len(parsed) == n
    dino = next(r for r in parsed if r["objective"] == "dino" and r["protocol"] == "linear_seg@1")
    assert float(dino["mean"]) == pytest.approx(statistics.mean(DINO_V1)) and dino["rank"] == "2"
    assert next(r for r in parsed if r["objective"] == "leopart")["rank"] == "ref"

    data = json.loads(render(rows, "json"))
    assert len(data) == n and {"mean", "std", "n_seeds", "protocol", "rank", "run_ids"} <= set(data[0])

    expected = f"{statistics.mean(DINO_V1):.2f} ± {statistics.stdev(DINO_V1):.2f}"
    markdown = render(rows, "markdown")
    assert markdown.count("### ") == 4 and expected in markdown
    assert "### linear_seg/miou — linear_seg@1 on voc" in markdown
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table_lines}) == 1  # every row has every column

    table = render(rows, "table")
    assert expected in table and "protocol linear_seg@2" in table and "ref" in table
    assert table.index("linear_seg@1 on voc") < table.index("linear_seg@2 on voc")


def test_render_table_on_console() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120, color_system=None)
    rows = reference_rows(REFERENCES)
    assert render(rows, "table", console=console) == ""
    assert "DINO paper" in console.file.getvalue()  # type: ignore[attr-defined]


def test_nan_mean_sorts_last_and_json_stays_strict() -> None:
    rows = [
        LeaderboardRow("a", "b", "d", "p@1", "e/m", float("nan"), None, 1),
        LeaderboardRow("c", "b", "d", "p@1", "e/m", 1.0, None, 1),
    ]
    assert [r.objective for r in sort_rows(rows)] == ["c", "a"]
    assert json.loads(render(rows, "json"))[1]["mean"] is None


def test_diagnostics_are_not_ranked_unless_asked(tracking_uri: str) -> None:
    experiment = f"diag-{uuid.uuid4().hex[:8]}"
    diagnostic = _evaluation("dse", 1, "dse", 0.3)
    diagnostic.settings["diagnostic"] = True
    _run(
        tracking_uri,
        experiment,
        objective="dino",
        seed=0,
        evaluations=[_evaluation("knn", 1, "top1_k20", 50.0), diagnostic],
    )
    ranked = collect_rows(tracking_uri=tracking_uri, experiment=experiment)
    assert [r.metric for r in ranked] == ["knn/top1_k20"]
    everything = collect_rows(tracking_uri=tracking_uri, experiment=experiment, diagnostics=True)
    assert sorted(r.metric for r in everything) == ["dse/dse", "knn/top1_k20"]


def test_a_tagged_method_variant_is_its_own_row(tracking_uri: str) -> None:
    experiment = f"variant-{uuid.uuid4().hex[:8]}"
    for seed in (0, 1):
        evaluations = [_evaluation("linear_seg", 1, "miou", 40.0 + seed)]
        _run(tracking_uri, experiment, objective="cotap", seed=seed, evaluations=evaluations)
        evaluations = [_evaluation("linear_seg", 1, "miou", 50.0 + seed)]
        tags = {METHOD_TAG: "cotap+oaf"}
        _run(tracking_uri, experiment, objective="cotap", seed=seed, evaluations=evaluations, tags=tags)
    rows = collect_rows(tracking_uri=tracking_uri, experiment=experiment)
    by_method = {r.objective: (r.mean, r.n_seeds) for r in rows}
    assert by_method == {"cotap": (40.5, 2), "cotap+oaf": (50.5, 2)}


def test_absent_class_conventions_are_shown_and_never_ranked_together(tracking_uri: str) -> None:
    experiment = f"absent-{uuid.uuid4().hex[:8]}"
    for seed, (value, absent) in enumerate([(60.0, "zero"), (70.0, "exclude_no_gt"), (62.0, "zero")]):
        evaluation = _evaluation("hummingbird", 2, "miou", value)
        evaluation.settings["absent_classes"] = absent
        _run(tracking_uri, experiment, objective=f"m{seed}", seed=0, evaluations=[evaluation])
    rows = sort_rows(collect_rows(tracking_uri=tracking_uri, experiment=experiment))
    assert {(r.objective, r.absent_classes, r.rank) for r in rows} == {
        ("m0", "zero", 2),
        ("m2", "zero", 1),
        ("m1", "exclude_no_gt", 1),
    }
    text = render(rows, "markdown")
    assert "absent classes: zero (every class in the mean, absent ones 0" in text
    assert "absent classes: exclude_no_gt (classes without ground-truth pixels leave the mean)" in text
    published = reference_rows([{**REFERENCES[0], "absent_classes": "zero"}])
    assert published[0].absent_classes == "zero" and "absent classes: zero" in render(published, "markdown")


def _bench_like_run(uri: str, experiment: str, value: float, **overrides: object) -> str:
    """A run logged the way ``dssl bench`` logs one (params, row keys, config.yaml), with a made-up k-means score."""
    from dssl import api
    from dssl.runner import run_params
    from dssl.tracking.leaderboard import ROW_KEY_TAG

    config = api.resolve({"evaluators": ["kmeans_seg"], "device": "cpu", **overrides})
    with MlflowTracker(tracking_uri=uri, experiment=experiment) as run:
        run.log_params(run_params(config))
        run.set_tags({METHOD_TAG: config.objective.name, f"{ROW_KEY_TAG}kmeans_seg": config.row_key("kmeans_seg")})
        run.log_dict(config.to_dict(), "config.yaml")
        run.log_evaluation(_evaluation("kmeans_seg", 1, "miou", value))
    time.sleep(0.002)
    return run.run_id


def test_runs_at_other_step_counts_are_other_rows_and_reruns_of_a_seed_are_superseded(tracking_uri: str) -> None:
    experiment = f"budgets-{uuid.uuid4().hex[:8]}"
    long = _bench_like_run(tracking_uri, experiment, 30.0, seed=0, optim={"steps": 20})
    first = _bench_like_run(tracking_uri, experiment, 25.0, seed=0, optim={"steps": 10})
    rows = collect_rows(tracking_uri=tracking_uri, experiment=experiment)
    assert sorted((r.variant, r.mean, r.n_seeds) for r in rows) == [("steps=10", 25.0, 1), ("steps=20", 30.0, 1)]
    assert all(r.superseded == [] for r in rows)

    again = _bench_like_run(tracking_uri, experiment, 26.0, seed=0, optim={"steps": 10})  # the same seed once more
    other_seed = _bench_like_run(tracking_uri, experiment, 28.0, seed=1, optim={"steps": 10})
    rows = {r.variant: r for r in collect_rows(tracking_uri=tracking_uri, experiment=experiment)}
    assert set(rows) == {"steps=10", "steps=20"} and rows["steps=20"].run_ids == [long]
    ten = rows["steps=10"]
    assert (ten.run_ids, ten.mean, ten.n_seeds) == ([again, other_seed], 27.0, 2)
    assert ten.superseded == [{"run_id": first, "seed": "0", "value": 25.0, "by": again}]

    table = render(list(rows.values()), "table")
    assert "variant" in table and "steps=10" in table and "steps=20" in table
    assert "1 older run of a seed superseded (--all lists them)" in table and first[:8] not in table
    listed = render(list(rows.values()), "markdown", all_runs=True)
    assert f"{first[:8]} superseded by {again[:8]}" in listed and "_25.00_" in listed
    assert json.loads(render(list(rows.values()), "json"))[0]["superseded"] is not None


def test_variant_names_every_setting_that_differs_even_without_config_files(tracking_uri: str) -> None:
    experiment = f"variant-params-{uuid.uuid4().hex[:8]}"
    for seed, init in [(0, "random"), (1, "random"), (0, "timm")]:
        with MlflowTracker(tracking_uri=tracking_uri, experiment=experiment) as run:
            run.log_params({"objective": "dino", "backbone": "vit_t16", "seed": seed, "init": init, "steps": 5})
            run.log_evaluation(_evaluation("linear_seg", 1, "miou", 40.0 + seed + (init == "timm") * 10))
        time.sleep(0.002)
    rows = collect_rows(tracking_uri=tracking_uri, experiment=experiment)
    assert sorted((r.variant, r.n_seeds) for r in rows) == [("init=random", 2), ("init=timm", 1)]


def test_leaderboard_all_flag_lists_superseded_runs(tracking_uri: str) -> None:
    from click.testing import CliRunner
    from dssl.cli.main import cli

    experiment = f"all-{uuid.uuid4().hex[:8]}"
    old = _bench_like_run(tracking_uri, experiment, 20.0, seed=0, optim={"steps": 4})
    new = _bench_like_run(tracking_uri, experiment, 21.0, seed=0, optim={"steps": 4})
    args = ["leaderboard", "--tracking-uri", tracking_uri, "--experiment", experiment]
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 0 and "1 older run of a seed superseded" in plain.output and old[:8] not in plain.output
    everything = CliRunner().invoke(cli, [*args, "--all"])
    assert f"{old[:8]} superseded by {new[:8]}" in everything.output
