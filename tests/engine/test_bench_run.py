"""`dssl bench` end to end on a tiny configuration: results, MLflow run, FAILED runs, bad input."""

from __future__ import annotations

import json

import dssl
import pytest
import torch
import yaml
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.data import fixtures
from dssl.results import RunResults
from tiny_config import TINY_SETS

TINY = [
    *TINY_SETS,
    "optim.steps=3",
    "evaluator_options.linear_seg.epochs=1",
    "evaluator_options.kmeans_seg.seeds=[0]",
    "evaluator_options.kmeans_seg.n_init=1",
]


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = client.search_experiments()
    return client.search_runs([e.experiment_id for e in experiments]) if experiments else []


def test_tiny_bench_trains_evaluates_and_logs(store, tmp_path):
    results = dssl.bench(objective="dino", backbone="vit_t16", sets=TINY)
    assert results.status == "FINISHED"
    assert {e.protocol_id for e in results.evaluations} == {"linear_seg@1", "kmeans_seg@1"}
    written = RunResults.read(tmp_path / results.run.output_dir / "results.json")
    assert written.evaluations[0].metrics == results.evaluations[0].metrics
    (run,) = _runs(store)
    assert run.info.status == "FINISHED"
    assert run.data.params["objective"] == "dino" and run.data.params["seed"] == "0"
    assert "train/loss" in run.data.metrics and "linear_seg/miou" in run.data.metrics
    assert run.data.tags["dssl.protocol.linear_seg"] == "linear_seg@1"
    assert run.data.tags["dssl.direction.linear_seg/miou"] == "higher"
    assert "dssl.plugin.dssl-bench" in run.data.tags and run.data.tags["dssl.device"] == "cpu"
    from mlflow.tracking import MlflowClient

    artifacts = {a.path for a in MlflowClient(store).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "results.json", "checkpoints"} <= artifacts

    # The logged backbone initialises a new run (--init runs:/ID) and the leaderboard sees the run.
    again = dssl.bench(objective="dino", backbone="vit_t16", init=f"runs:/{run.info.run_id}", sets=[*TINY, "seed=1"])
    assert again.status == "FINISHED"
    board = CliRunner().invoke(cli, ["leaderboard", "--format", "json", "--metric", "linear_seg/miou"])
    rows = json.loads(board.output)
    # Another init is another configuration: a row of its own, the init named as what sets the two apart.
    assert sorted((r["variant"], r["n_seeds"], r["protocol"]) for r in rows) == [
        ("init=random", 1, "linear_seg@1"),
        (f"init=runs:/{run.info.run_id}", 1, "linear_seg@1"),
    ]


def test_non_finite_loss_fails_the_run_and_exits_1(store, monkeypatch):
    from dssl.objectives.dino import DINOObjective

    original = DINOObjective.forward

    def poisoned(self, batch, *, step):
        out = original(self, batch, step=step)
        return {**out, "loss": out["loss"] * (float("nan") if step == 1 else 1.0)}

    monkeypatch.setattr(DINOObjective, "forward", poisoned)
    result = CliRunner().invoke(cli, ["bench", *[a for s in TINY for a in ("--set", s)]])
    assert result.exit_code == 1
    assert "non-finite loss at step 1" in result.output
    (run,) = _runs(store)
    assert run.info.status == "FAILED"
    assert "non-finite loss at step 1" in run.data.tags["dssl.error"]
    assert "train/loss" in run.data.metrics  # what was logged before stays


def test_same_seed_gives_identical_results(store):
    first = dssl.bench(sets=[*TINY, "tracking.enabled=false"])
    second = dssl.bench(sets=[*TINY, "tracking.enabled=false"])
    assert first.train["loss"] == second.train["loss"]
    assert first.evaluations[0].metrics == second.evaluations[0].metrics


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "vit_t61"], "did you mean vit_t16"),
        (["--set", "augmentation.options.global_size=36"], "not a multiple of the patch size"),
        (["--init", "/no/such/checkpoint.pth"], "not found"),
    ],
)
def test_bad_input_exits_2_before_any_run(store, extra, message):
    result = CliRunner().invoke(cli, ["bench", *[a for s in TINY for a in ("--set", s)], *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert _runs(store) == []


def test_corrupt_and_incompatible_checkpoints_exit_2(store, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    wide = tmp_path / "wide.pth"
    from dssl.backbones.checkpoint import save_backbone
    from dssl.backbones.vit import ViTBackbone

    save_backbone(ViTBackbone("vit_s16", img_size=32), wide)
    for path, message in ((corrupt, "corrupt.pth"), (wide, "shape")):
        result = CliRunner().invoke(cli, ["bench", *[a for s in TINY for a in ("--set", s)], "--init", str(path)])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert _runs(store) == []
    assert torch.get_num_threads() >= 1


def test_api_run_with_a_quiet_console_prints_nothing(tmp_path, capsys):
    from dssl.api import resolve, run
    from rich.console import Console

    config = resolve(
        objective="dino",
        backbone="vit_t16",
        sets=[*TINY, "tracking.enabled=false", f"output_dir={tmp_path}"],
    )
    results = run(config, console=Console(quiet=True))
    assert [e.evaluator for e in results.evaluations] == ["linear_seg", "kmeans_seg"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_baselines_show_what_the_run_learned(store, tmp_path):
    from dssl.api import build, evaluate_built, resolve
    from rich.console import Console

    sets = [*TINY, "baselines=[start, random]"]
    console = Console(record=True, width=200)
    first = dssl.api.run(resolve(objective="dino", backbone="vit_t16", sets=sets), console=console)
    # From random init the start *is* the random-init baseline: evaluated once, reported as the start.
    assert set(first.baselines) == {"start"}
    untrained = evaluate_built(build(resolve(objective="dino", backbone="vit_t16", sets=TINY)))
    assert [e.metrics for e in first.baselines["start"]] == [e.metrics for e in untrained]
    assert first.init is not None and first.init.startswith("init: random")
    table = console.export_text()
    assert "start (random init)" in table and "Δ vs start" in table

    # From a checkpoint: the start is that checkpoint, and the random-init baseline is evaluated too.
    checkpoint = tmp_path / first.run.output_dir / "checkpoints" / "backbone.pt"
    second = dssl.bench(objective="dino", backbone="vit_t16", init=str(checkpoint), sets=sets)
    assert set(second.baselines) == {"start", "random"}
    assert [e.metrics for e in second.baselines["random"]] == [e.metrics for e in first.baselines["start"]]
    trained_first = {e.evaluator: e.metrics for e in first.evaluations}
    assert {e.evaluator: e.metrics for e in second.baselines["start"]} == trained_first
    written = RunResults.read(tmp_path / second.run.output_dir / "results.json")
    assert set(written.baselines) == {"start", "random"}

    # Logged beside the run's own metrics, where the leaderboard does not take them for evaluations.
    run = next(r for r in _runs(store) if r.info.run_id == second.run.run_id)
    assert "baseline/start/linear_seg/miou" in run.data.metrics
    from dssl.tracking.leaderboard import collect_rows

    assert all(not row.metric.startswith("baseline/") for row in collect_rows(tracking_uri=store))
    # Baselines change what is shown, not what is trained: the configuration fingerprint ignores them.
    assert resolve(objective="dino", sets=sets).fingerprint() == resolve(objective="dino", sets=TINY).fingerprint()


def test_another_dataset_is_evaluated_on_its_own_data(store, tmp_path):
    # No eval_dataset anywhere: the cpu preset's evaluation set (embedded, 512 images) belongs to embedded.
    data_root = fixtures.write_image_mask_folder(tmp_path / "data")  # 3 classes, 3 train and 2 val images
    tiny = {
        "dataset": {"options": {"num_classes": 3, "size": 32}},
        "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
        "objective": {"options": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}},
        "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
        "evaluators": ["kmeans_seg"],
        "evaluator_options": {"kmeans_seg": {"seeds": [0], "n_init": 1}},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    args = ["bench", "--dataset", "image_mask_folder", "--data-root", str(data_root), "--config", "tiny.yaml"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (run,) = _runs(store)
    assert run.data.params["eval_dataset"] == "image_mask_folder"
    assert run.data.tags["dssl.dataset.kmeans_seg"] == "image_mask_folder"
    written = RunResults.read(tmp_path / run.data.tags["dssl.output_dir"] / "results.json")
    (evaluation,) = written.evaluations
    assert (evaluation.settings["num_classes"], evaluation.settings["val_images"]) == (3, 2)  # the folder's val split
