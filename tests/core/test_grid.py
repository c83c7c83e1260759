"""``dssl grid``: the grid file format, its expansion, child runs under a parent, skipping, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.errors import ConfigError
from dssl.grid.spec import load_grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Tiny runs: 2 steps of 2 images at 32 px, k-means on 16/8 images.
TINY_BASE: dict[str, Any] = {
    "device": "cpu",
    "preset": "cpu",
    "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 0},
    "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
    "eval_dataset": {"name": "embedded", "options": {"num_train": 16, "num_val": 8}},
    "log_every": 1,
}


def write_grid(path: Path, **data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def mlflow_runs(uri: str, experiment: str) -> list[Any]:
    """The grid's runs (parents and cells); the experiment's leaderboard run, which every grid updates, is not one."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = list(client.search_runs([found.experiment_id])) if found else []
    return [r for r in runs if "dssl.leaderboard" not in r.data.tags]


# -- the file format --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"objectives": ["dino"], "evaluators": ["kmeans_seg"], "seedz": [0]}, "unknown key 'seedz'"),
        ({"objectives": [{"name": "dino", "lable": "x"}], "evaluators": ["knn"]}, "unknown key 'objectives.0.lable'"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "base": {"optim": {"stepz": 2}}}, "base.optim.stepz"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "base": {"seed": 1}}, "'seed' is not allowed in base"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "base": {"backbone": {"name": "x"}}}, "backbone.name"),
        ({"objectives": ["dino", "dino"], "evaluators": ["knn"]}, "objective label 'dino' appears twice"),
        ({"objectives": [], "evaluators": ["knn"]}, "objectives"),
        ({"objectives": ["dino"]}, "evaluators"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "seeds": [0, 0]}, "seeds must be unique"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "set": ["optim.lr"]}, "expected key.path=value"),
        ({"objectives": ["dino"], "evaluators": ["knn"], "set": ["tracking.uri=x"]}, "tracking is set per grid"),
        (
            {"objectives": ["dino"], "evaluators": ["knn"], "overrides": [{"match": {"objective": "udi"}, "set": []}]},
            "overrides.0.set",
        ),
        (
            {
                "objectives": ["dino"],
                "evaluators": ["knn"],
                "overrides": [{"match": {"objective": "udi"}, "set": ["a=1"]}],
            },
            "overrides[0].match.objective: 'udi' is not in the grid",
        ),
        (
            {"objectives": ["dino"], "evaluators": ["knn"], "overrides": [{"match": {"optim": "x"}, "set": ["a=1"]}]},
            "unknown axis 'optim'",
        ),
    ],
)
def test_bad_grid_files_are_one_line_config_errors(tmp_path, data, expected):
    path = write_grid(tmp_path / "bad.yaml", **data)
    with pytest.raises(ConfigError) as info:
        load_grid(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_grid(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- dino\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_grid(tmp_path / "list.yaml")


def test_expansion_labels_order_and_overrides(tmp_path):
    path = write_grid(
        tmp_path / "my-grid.yaml",
        set=["optim.lr=0.001"],
        objectives=["dino", {"name": "cotap", "label": "cotap+oaf", "set": ["objective.options.filter=oaf"]}],
        backbones=["vit_t16", "vit_s16"],
        evaluators=["kmeans_seg"],
        seeds=[0, 1, 2],
        overrides=[{"match": {"objective": "cotap+oaf", "backbone": "vit_s16"}, "set": ["optim.steps=7"]}],
    )
    spec = load_grid(path)
    cells = spec.cells()
    assert spec.name == "my-grid" and len(cells) == spec.n_cells == 2 * 2 * 3
    assert [c.index for c in cells] == list(range(12))
    assert cells[0].label == "dino / vit_t16 / embedded" and cells[0].seed == 0
    assert cells[-1].label == "cotap+oaf / vit_s16 / embedded" and cells[-1].seed == 2
    assert cells[-1].run_name == "cotap+oaf-vit_s16-embedded-s2"
    assert sorted({c.label for c in cells}) == sorted(
        f"{o} / {b} / embedded" for o in ("dino", "cotap+oaf") for b in ("vit_t16", "vit_s16")
    )
    by_key = {(c.objective.key, c.backbone.key, c.seed): c for c in cells}
    assert by_key["dino", "vit_s16", 0].sets == ("optim.lr=0.001",)
    assert by_key["cotap+oaf", "vit_t16", 1].sets == ("optim.lr=0.001", "objective.options.filter=oaf")
    assert by_key["cotap+oaf", "vit_s16", 1].sets[-1] == "optim.steps=7"
    assert by_key["cotap+oaf", "vit_s16", 1].overrides()["objective"] == "cotap"


def test_checkpoint_entries_are_evaluation_only_rows_beside_the_objectives(tmp_path):
    path = write_grid(
        tmp_path / "ckpt.yaml",
        objectives=["dino"],
        backbones=["vit_t16", "vit_s16"],
        checkpoints=[
            {"label": "random-init", "init": "random"},
            {"label": "dinov2", "init": "/ckpt/dinov2.pth", "backbone": "vit_s16", "set": ["seed=5"]},
        ],
        evaluators=["kmeans_seg"],
        seeds=[0, 1],
        overrides=[{"match": {"objective": "dinov2"}, "set": ["precision=fp32"]}],
    )
    spec = load_grid(path)
    cells = spec.cells()
    assert len(cells) == spec.n_cells == (2 + 2 + 1) * 2
    rows = [(c.objective.key, c.backbone.key, c.checkpoint is not None) for c in cells[::2]]
    assert rows == [
        ("dino", "vit_t16", False),
        ("dino", "vit_s16", False),
        ("random-init", "vit_t16", True),
        ("random-init", "vit_s16", True),
        ("dinov2", "vit_s16", True),
    ]
    dinov2 = cells[-1]
    assert dinov2.overrides() == {
        "backbone": "vit_s16",
        "dataset": "embedded",
        "evaluators": ["kmeans_seg"],
        "seed": 1,
        "init": "/ckpt/dinov2.pth",
    }
    assert dinov2.sets == ("seed=5", "precision=fp32")
    only_checkpoints = {"checkpoints": [{"label": "r", "init": "random"}], "evaluators": ["knn"]}
    assert len(load_grid(write_grid(tmp_path / "c.yaml", **only_checkpoints)).cells()) == 1
    with pytest.raises(ConfigError, match="objective label 'dino' appears twice"):
        load_grid(
            write_grid(
                tmp_path / "d.yaml",
                **only_checkpoints | {"objectives": ["dino"]} | {"checkpoints": [{"label": "dino", "init": "random"}]},
            )
        )
    with pytest.raises(ConfigError, match="at least one objective"):
        load_grid(write_grid(tmp_path / "e.yaml", evaluators=["knn"]))


def test_cells_resolve_like_bench_and_fingerprints_identify_them(tmp_path):
    from dssl.api import resolve
    from dssl.grid.runner import plan_grid
    from dssl.host import get_host

    path = write_grid(
        tmp_path / "g.yaml",
        base=TINY_BASE,
        objectives=["dino", {"name": "dino", "label": "dino-lr", "set": ["optim.lr=0.01"]}],
        evaluators=["kmeans_seg"],
        seeds=[0, 1],
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cells = plan_grid(load_grid(path), host=get_host(), tracking_uri=uri, experiment="e")
    assert len({c.fingerprint for c in cells}) == 4 and all(c.status == "pending" for c in cells)
    assert not (tmp_path / "mlflow.db").exists()  # planning never creates a store
    same = resolve(TINY_BASE, objective="dino", evaluators=["kmeans_seg"], seed=1, sets=["optim.lr=0.01"])
    assert cells[3].config.fingerprint() == same.fingerprint()
    assert cells[3].config.optim.lr == 0.01 and cells[3].config.tracking.experiment == "e"


def test_preset_evaluator_options_of_unselected_evaluators_are_left_out(tmp_path):
    from dssl.grid.runner import plan_grid
    from dssl.host import get_host

    host = get_host()
    if ("objective", "stellar") not in host.registry:
        pytest.skip("the stellar plugin is not installed")
    path = write_grid(
        tmp_path / "g.yaml",
        base={"preset": "gpu"},
        objectives=["stellar"],
        datasets=["imagefolder"],  # the preset's dataset options are imagefolder's (nothing is read here)
        evaluators=["kmeans_seg"],
        seeds=[0],
    )
    (cell,) = plan_grid(load_grid(path), host=host, tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="e")
    assert cell.config.evaluators == ["kmeans_seg"] and list(cell.config.evaluator_options) == ["kmeans_seg"]


def test_a_cell_that_does_not_resolve_stops_the_grid_with_exit_2(tmp_path):
    path = write_grid(tmp_path / "g.yaml", objectives=["no_such_objective"], evaluators=["kmeans_seg"])
    result = CliRunner().invoke(cli, ["grid", str(path), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2
    assert "no_such_objective" in result.output and str(path) in result.output


# -- running (fake training: fast) ------------------------------------------------------------------------


def _fake_run_bench(config, *, host, console=None, value=lambda config: 10.0 + config.seed):
    """Stands in for dssl.runner.run_bench: one tracked run with a made-up kmeans_seg result, ``value(config)``."""
    from dssl.results import EvaluationResult, MetricValue
    from dssl.runner import run_params
    from dssl.tracking.mlflow_tracker import MlflowTracker

    with MlflowTracker(
        tracking_uri=config.tracking.uri, experiment=config.tracking.experiment, run_name=config.tracking.run_name
    ) as tracker:
        tracker.log_params(run_params(config))
        if config.optim.lr == 0.5:
            raise RuntimeError("boom at step 1")
        filtered = config.objective.options.get("filter") == "oaf"
        tracker.log_evaluation(
            EvaluationResult(
                evaluator="kmeans_seg",
                protocol="kmeans_seg",
                protocol_version=2 if filtered else 1,
                dataset="embedded",
                metrics={"miou": MetricValue(value=value(config))},
            )
        )


def test_grid_runs_children_aggregates_seeds_and_keeps_protocol_versions_apart(tmp_path, monkeypatch):
    import json

    import dssl.runner
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dssl.runner, "run_bench", _fake_run_bench)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "fake.yaml",
        base=TINY_BASE,
        objectives=[
            "dino",
            {"name": "cotap", "label": "cotap+oaf", "set": ["objective.options.filter=oaf"]},
            {"name": "dino", "label": "dino-broken", "set": ["optim.lr=0.5"]},
        ],
        evaluators=["kmeans_seg"],
        seeds=[0, 1],
    )
    result = CliRunner().invoke(cli, ["grid", str(path), "--tracking-uri", uri, "--experiment", "g"])
    assert result.exit_code == 1, result.output
    assert "2 of 6 grid cells failed" in result.output and "boom at step 1" in result.output

    runs = mlflow_runs(uri, "g")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "fake" and parent.data.tags["dssl.grid"] == "fake"
    assert len(children) == 6 and all(r.data.tags["dssl.grid"] == "fake" for r in children)
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == 2 and all("boom at step 1" in r.data.tags["dssl.error"] for r in failed)
    assert all(r.data.tags["dssl.fingerprint"] == r.data.params["config_hash"] for r in children)

    client = MlflowClient(tracking_uri=uri)
    board = json.loads(Path(client.download_artifacts(parent.info.run_id, "grid_leaderboard.json")).read_text())
    rows = {(r["objective"], r["protocol"]): r for r in board["rows"]}
    assert set(rows) == {("dino", "kmeans_seg@1"), ("cotap+oaf", "kmeans_seg@2")}
    assert rows["dino", "kmeans_seg@1"]["mean"] == pytest.approx(10.5)
    assert rows["dino", "kmeans_seg@1"]["std"] == pytest.approx(0.7071, abs=1e-3)
    assert rows["dino", "kmeans_seg@1"]["n_seeds"] == 2
    markdown = Path(client.download_artifacts(parent.info.run_id, "grid_leaderboard.md")).read_text()
    assert "## kmeans_seg — kmeans_seg@1 on embedded" in markdown and "kmeans_seg@2 on embedded" in markdown
    assert "| dino | vit_cpu8 | embedded | 2/2 | 10.50 ± 0.71 |" in markdown
    assert "0/2 (2 failed)" in markdown


def test_grid_leaderboard_counts_only_the_cells_as_the_grid_resolves_them_today(tmp_path, monkeypatch):
    import functools
    import json

    import dssl.api
    import dssl.runner

    monkeypatch.chdir(tmp_path)
    # kmeans_seg mIoU = 1000 x lr + seed, so that a cell's settings show in its mean
    by_lr = functools.partial(_fake_run_bench, value=lambda config: 1000 * config.optim.lr + config.seed)
    monkeypatch.setattr(dssl.runner, "run_bench", by_lr)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    grid = {"experiment": "changed", "base": TINY_BASE, "set": ["optim.lr=0.001"], "evaluators": ["kmeans_seg"]}
    path = write_grid(tmp_path / "changed.yaml", **grid, objectives=["dino", "paka"], seeds=[0, 1])
    assert invoke("grid", str(path), "--tracking-uri", uri).exit_code == 0
    # One method's settings change (as when its preset block is edited): only its cells run again.
    objectives = ["dino", {"name": "paka", "set": ["optim.lr=0.003"]}]
    write_grid(path, **grid, objectives=objectives, seeds=[0, 1])
    rerun = invoke("grid", str(path), "--tracking-uri", uri)
    assert rerun.exit_code == 0 and rerun.output.count("skipped (done in run") == 2

    rows = dssl.api.grid_leaderboard(path, metric="miou", tracking_uri=uri)
    assert [(r.objective, round(r.mean, 2), r.n_seeds, len(r.run_ids)) for r in rows] == [
        ("paka", 3.5, 2, 2),
        ("dino", 1.5, 2, 2),
    ]
    # The experiment's leaderboard keeps the runs of the earlier settings as a row of their own.
    everything = dssl.api.leaderboard(experiment="changed", metric="kmeans_seg/miou", tracking_uri=uri)
    assert sorted((r.objective, round(r.mean, 2)) for r in everything) == [
        ("dino", 1.5),
        ("paka", 1.5),
        ("paka", 3.5),
    ]
    # Settings no cell has run with yet: no rows (not the earlier runs').
    assert dssl.api.grid_leaderboard(path, sets=["optim.lr=0.009"], tracking_uri=uri) == []

    # The same table from the command line: dssl leaderboard --grid FILE [--set ...].
    shown = invoke("leaderboard", "--grid", str(path), "--tracking-uri", uri, "--metric", "miou", "--format", "json")
    assert shown.exit_code == 0, shown.output
    assert [(r["objective"], round(r["mean"], 2)) for r in json.loads(shown.output)] == [("paka", 3.5), ("dino", 1.5)]
    none = invoke("leaderboard", "--grid", str(path), "--set", "optim.lr=0.009", "--tracking-uri", uri)
    assert none.exit_code == 0 and f"no finished runs of the cells of {path}" in none.output
    for args, message in (
        (["--set", "optim.lr=0.009"], "give the grid file with --grid"),
        (["--grid", str(path), "--all"], "drop --diagnostics, --all and --log"),
    ):
        refused = CliRunner().invoke(cli, ["leaderboard", *args, "--tracking-uri", uri])
        assert refused.exit_code == 2 and message in refused.output, refused.output


# -- running (real training: tiny) ------------------------------------------------------------------------


def test_failing_cell_is_recorded_the_grid_goes_on_and_reruns_skip_finished_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "tiny.yaml",
        base=TINY_BASE,
        set=["objective.options.out_dim=256"],
        objectives=["dino", {"name": "dino", "label": "dino-badinit", "set": ["backbone.init=missing-ckpt.pt"]}],
        evaluators=["kmeans_seg"],
        seeds=[0],
    )
    args = ["grid", str(path), "--tracking-uri", uri, "--experiment", "t"]

    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 1, first.output
    assert "1 of 2 grid cells failed" in first.output and "missing-ckpt.pt" in first.output
    runs = mlflow_runs(uri, "t")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    status = {r.data.tags["dssl.grid.cell"]: r for r in runs if r is not parent}
    assert status["dino / vit_cpu8 / embedded"].info.status == "FINISHED"
    assert "kmeans_seg/miou" in status["dino / vit_cpu8 / embedded"].data.metrics
    bad = status["dino-badinit / vit_cpu8 / embedded"]
    assert bad.info.status == "FAILED" and "missing-ckpt.pt" in bad.data.tags["dssl.error"]
    assert {r.data.tags["mlflow.parentRunId"] for r in status.values()} == {parent.info.run_id}

    dry = invoke(*args, "--dry-run")
    assert dry.exit_code == 0
    good_id = status["dino / vit_cpu8 / embedded"].info.run_id
    lines = {line.split("│")[2].strip(): line for line in dry.output.splitlines() if line.count("│") > 4}
    assert f"done ({good_id})" in lines["dino / vit_cpu8 / embedded"]
    assert "pending" in lines["dino-badinit / vit_cpu8 / embedded"]
    assert "1 done, 1 pending" in dry.output

    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 1
    assert f"skipped (done in run {good_id})" in second.output
    runs = mlflow_runs(uri, "t")
    assert sum(r.info.status == "FINISHED" and "dssl.grid.cell" in r.data.tags for r in runs) == 1
    assert sum(r.info.status == "FAILED" and "dssl.grid.cell" in r.data.tags for r in runs) == 2
    assert sum("mlflow.parentRunId" not in r.data.tags for r in runs) == 2  # one parent per invocation


def test_a_checkpoints_entry_is_evaluated_without_training_beside_trained_cells(tmp_path, monkeypatch):
    import json

    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "ranked.yaml",
        base=TINY_BASE,
        set=["objective.options.out_dim=256", "evaluator_options.kmeans_seg.n_init=1"],
        objectives=["dino"],
        checkpoints=[{"label": "random-init", "init": "random"}],
        evaluators=["kmeans_seg"],
        seeds=[0],
    )
    args = ["grid", str(path), "--tracking-uri", uri, "--experiment", "ranked"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    runs = mlflow_runs(uri, "ranked")
    cells = {r.data.tags["dssl.grid.cell"]: r for r in runs if "dssl.grid.cell" in r.data.tags}
    trained, evaluated = cells["dino / vit_cpu8 / embedded"], cells["random-init / vit_cpu8 / embedded"]
    assert evaluated.info.status == "FINISHED" and evaluated.data.tags["dssl.evaluation_only"] == "true"
    assert "train/loss" in trained.data.metrics and not any(k.startswith("train/") for k in evaluated.data.metrics)
    assert evaluated.data.params["steps"] == "0" and evaluated.data.params["label"] == "random-init"
    assert evaluated.data.tags["dssl.fingerprint"] == evaluated.data.params["config_hash"]
    parent_id = evaluated.data.tags["mlflow.parentRunId"]
    board = json.loads(Path(MlflowClient(uri).download_artifacts(parent_id, "grid_leaderboard.json")).read_text())
    assert sorted(
        (r["objective"], r["evaluation_only"]) for r in board["rows"] if r["metric"] == "kmeans_seg/miou"
    ) == [
        ("dino", False),
        ("random-init", True),
    ]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output.count("skipped (done in run") == 2
    # Each grid ends by writing the experiment's leaderboard into it, as a table the MLflow UI renders.
    client = MlflowClient(uri)
    (board_run,) = client.search_runs(
        [client.get_experiment_by_name("ranked").experiment_id], "tags.`dssl.leaderboard` = 'true'"
    )
    table = json.loads(Path(client.download_artifacts(board_run.info.run_id, "leaderboard.json")).read_text())
    methods = {row[table["columns"].index("method")] for row in table["data"]}
    assert methods == {"dino", "random-init (eval only)"}


@pytest.mark.slow
def test_parallel_cells_run_in_their_own_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "par.yaml",
        base=TINY_BASE,
        set=["objective.options.out_dim=256"],
        objectives=["dino", {"name": "dino", "label": "dino-badinit", "set": ["backbone.init=missing-ckpt.pt"]}],
        evaluators=["kmeans_seg"],
        seeds=[0],
    )
    result = CliRunner().invoke(cli, ["grid", str(path), "--parallel", "2", "--tracking-uri", uri])
    assert result.exit_code == 1, result.output
    runs = mlflow_runs(uri, "dssl")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["dssl.grid.cell"]: r for r in runs if r is not parent}
    assert children["dino / vit_cpu8 / embedded"].info.status == "FINISHED"
    assert children["dino-badinit / vit_cpu8 / embedded"].info.status == "FAILED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert list((tmp_path / "dssl-runs" / "grid-logs" / "par").glob("*.log"))


def test_grid_help_imports_no_heavy_module():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from dssl.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['grid', '--help'])\n"
        "assert result.exit_code == 0 and '--parallel' in result.output, result.output\n"
        "print(','.join(m for m in ('torch', 'timm', 'mlflow', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tracker_run_defaults_from_context_and_environment(monkeypatch):
    from dssl.errors import UsageError
    from dssl.tracking.mlflow_tracker import PARENT_RUN_ENV, RUN_TAGS_ENV, nested_runs, run_defaults

    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.delenv(RUN_TAGS_ENV, raising=False)
    assert run_defaults() == (None, {})
    monkeypatch.setenv(PARENT_RUN_ENV, "p1")
    monkeypatch.setenv(RUN_TAGS_ENV, '{"dssl.grid": "g"}')
    assert run_defaults() == ("p1", {"dssl.grid": "g"})
    with nested_runs("p2", {"a": "b"}):
        assert run_defaults() == ("p2", {"a": "b"})
        with nested_runs(None):
            assert run_defaults() == (None, {})
    assert run_defaults()[0] == "p1"
    monkeypatch.setenv(RUN_TAGS_ENV, "[1]")
    with pytest.raises(UsageError, match=RUN_TAGS_ENV):
        run_defaults()
