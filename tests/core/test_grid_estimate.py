"""``dssl grid --estimate`` (cost before commitment), ``--set``, ``also_evaluate_on`` and the GPU post-training grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.errors import ConfigError
from dssl.grid.estimate import StepMeasurement, device_hours, estimate_grid, render_estimate
from dssl.grid.plan import CELL_INIT_PREFIX, PlannedCell, bind_trained_weights, plan_grid
from dssl.grid.spec import load_grid
from dssl.host import get_host

from tests.core.test_grid import TINY_BASE as GRID_TINY_BASE
from tests.core.test_grid import write_grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
POSTTRAIN = BENCHMARKS / "gpu-posttrain-vits16.yaml"
#: Images each post-training run sees: 10 COCO train2017 epochs rounded down to a multiple of 64 and 128.
POSTTRAIN_IMAGES = 1_182_720

#: Tiny CPU cells (test_grid's): vit_cpu8 at 32 px, 2 images per step; 40 steps, so profiles fit in them.
TINY_BASE: dict[str, Any] = {
    **GRID_TINY_BASE,
    "optim": {"steps": 40, "batch_size": 2, "warmup_steps": 0, "num_workers": 0},
}


def plan(path: Path, tmp_path: Path, **kwargs: Any) -> list[PlannedCell]:
    return plan_grid(
        load_grid(path, **kwargs), host=get_host(), tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="e"
    )


# -- the estimate's arithmetic ------------------------------------------------------------------------------


def test_device_hours_are_seconds_per_step_times_steps_times_runs():
    assert device_hours(1.8, 1000, 3) == pytest.approx(1.5)
    assert device_hours(0.5, 7200) == pytest.approx(1.0)


def test_estimate_groups_cells_by_cost_and_adds_up_hours_from_a_stubbed_timing(tmp_path):
    path = write_grid(
        tmp_path / "g.yaml",
        base=TINY_BASE,
        objectives=[
            "dino",
            {"name": "dino", "label": "dino-lr", "set": ["optim.lr=0.01"]},  # same cost as dino: one profile
            {"name": "dino", "label": "dino-b4", "set": ["optim.batch_size=4", "optim.steps=90"]},
        ],
        evaluators=["kmeans_seg"],
        seeds=[0, 1],
    )
    cells = plan(path, tmp_path)
    profiled: list[Any] = []

    def stub(config: Any) -> StepMeasurement:
        profiled.append(config)
        seconds = {2: 0.9, 4: 2.0}[config.optim.batch_size]
        return StepMeasurement(seconds, 3 * 2**20, "cpu", config.optim.batch_size, cpu_seconds_per_step=1.5)

    estimate = estimate_grid(cells, host=get_host(), measure=stub, steps=2, warmup=1)
    assert len(profiled) == 2  # dino and dino-lr share a cost; the batch-4 row is profiled on its own
    assert all(config.backbone.init == "random" and not config.tracking.enabled for config in profiled)
    (same, bigger) = estimate.costs
    assert same.runs == 4 and bigger.runs == 2
    assert same.device_hours == pytest.approx(0.9 * 40 * 4 / 3600)
    assert bigger.device_hours == pytest.approx(2.0 * 90 * 2 / 3600)
    assert estimate.total_hours == pytest.approx(same.device_hours + bigger.device_hours)
    text = render_estimate(estimate, "g")
    assert "CPU-hours" in text and "estimate is for the CPU" in text and "not included" in text
    assert "dino / vit_cpu8 / embedded" in text and "dino-b4 / vit_cpu8 / embedded" in text
    assert f"{estimate.total_hours:.3g}" in text.split("total")[-1]


def test_a_smaller_profile_batch_scales_the_time_per_step_linearly(tmp_path):
    path = write_grid(tmp_path / "g.yaml", base=TINY_BASE, objectives=["dino"], evaluators=["kmeans_seg"])
    cells = plan(path, tmp_path, sets=["optim.batch_size=8"])

    def stub(config: Any) -> StepMeasurement:
        assert config.optim.batch_size == 2
        return StepMeasurement(1.0, None, "cuda:0 (Fake GPU)", 2)

    estimate = estimate_grid(cells, host=get_host(), measure=stub, batch_size=2)
    (cost,) = estimate.costs
    assert cost.scaled and cost.seconds_per_step == pytest.approx(4.0)
    assert cost.device_hours == pytest.approx(4.0 * 40 / 3600)
    text = render_estimate(estimate, "g")
    assert "GPU-hours" in text and "scaled linearly" in text and "estimate is for the CPU" not in text


def test_bad_estimate_options_are_config_errors(tmp_path):
    path = write_grid(tmp_path / "g.yaml", base=TINY_BASE, objectives=["dino"], evaluators=["kmeans_seg"])
    cells = plan(path, tmp_path)
    with pytest.raises(ConfigError, match="--estimate-steps"):
        estimate_grid(cells, host=get_host(), steps=0, measure=lambda c: None)  # type: ignore[arg-type,return-value]


# -- the estimate on the CPU, for real ------------------------------------------------------------------------


def test_estimate_profiles_a_tiny_cpu_grid_and_prints_per_cell_and_total_cpu_hours(tmp_path):
    path = write_grid(
        tmp_path / "tiny.yaml", base=TINY_BASE, objectives=["dino"], evaluators=["kmeans_seg"], seeds=[0, 1]
    )
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["grid", str(path), "--estimate", "--estimate-steps", "1", "--estimate-warmup", "1", "--tracking-uri", uri]
    result = CliRunner().invoke(cli, [*args, "--set", "optim.steps=360"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "│ dino / vit_cpu8 / embedded" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    runs, steps, batch, seconds, cpu_seconds, hours = (c.replace(",", "") for c in cells[1:7])
    assert (runs, steps, batch) == ("2", "360", "2")
    assert float(seconds) > 0 and float(cpu_seconds) > 0
    assert float(hours) == pytest.approx(float(seconds) * 360 * 2 / 3600, rel=0.01)
    assert "total" in result.output and "This estimate is for the CPU" in result.output
    assert "torch threads" in result.output and "Evaluation" in result.output
    assert not (tmp_path / "m.db").exists()  # nothing is run or logged


def test_estimate_without_the_data_names_the_cell_and_the_expected_layout(tmp_path):
    path = write_grid(
        tmp_path / "g.yaml",
        base={**TINY_BASE, "eval_dataset": {"name": "voc2012"}},
        objectives=["dino"],
        datasets=[{"name": "imagefolder", "label": "coco", "set": ["dataset.options.root=coco"]}],
        evaluators=["linear_seg"],
    )
    args = ["grid", str(path), "--estimate", "--data-root", str(tmp_path / "empty")]
    result = CliRunner().invoke(cli, [*args, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2, result.output
    assert "estimating cell dino / vit_cpu8 / coco" in result.output
    assert str(tmp_path / "empty" / "coco") in result.output


# -- --set and also_evaluate_on -------------------------------------------------------------------------------


def test_cli_sets_come_after_every_override_of_the_file(tmp_path):
    path = write_grid(
        tmp_path / "g.yaml",
        base=TINY_BASE,
        set=["optim.lr=0.1"],
        objectives=[{"name": "dino", "set": ["optim.lr=0.2"]}],
        overrides=[{"match": {"objective": "dino"}, "set": ["optim.lr=0.3"]}],
        evaluators=["kmeans_seg"],
    )
    assert plan(path, tmp_path)[0].config.optim.lr == 0.3
    assert plan(path, tmp_path, sets=["optim.lr=0.4"])[0].config.optim.lr == 0.4
    with pytest.raises(ConfigError, match="--set"):
        load_grid(path, sets=["no-equals-sign"])


def test_also_evaluate_on_adds_one_evaluation_of_each_cells_weights_per_dataset(tmp_path):
    path = write_grid(
        tmp_path / "g.yaml",
        base=TINY_BASE,
        objectives=["dino", "cotap"],
        checkpoints=[{"label": "start", "init": "random"}],
        evaluators=["kmeans_seg"],
        also_evaluate_on=[{"dataset": {"name": "embedded_natural", "label": "natural"}, "evaluators": ["linear_seg"]}],
        seeds=[0, 1],
    )
    spec = load_grid(path)
    cells = plan(path, tmp_path)
    assert len(cells) == spec.n_cells == 12
    main, extra = cells[:6], cells[6:]
    assert [c.cell.evaluates for c in extra] == [0, 1, 2, 3, None, None]  # the checkpoint row needs no training
    for item in extra:
        source = main[item.cell.index - 6]
        assert item.cell.label == f"{source.cell.label} @ natural" and item.cell.seed == source.cell.seed
        assert item.config.eval_dataset is not None and item.config.eval_dataset.name == "embedded_natural"
        assert item.config.evaluators == ["linear_seg"] and item.cell.checkpoint is not None
        assert item.config.backbone.options == source.config.backbone.options
    assert extra[0].config.backbone.init == f"{CELL_INIT_PREFIX}{main[0].fingerprint}"
    assert extra[4].config.backbone.init == "random"
    assert len({item.fingerprint for item in cells}) == 12


def test_an_evaluation_of_a_cell_that_did_not_train_fails_without_running(tmp_path):
    path = write_grid(
        tmp_path / "g.yaml",
        base=TINY_BASE,
        objectives=["dino"],
        evaluators=["kmeans_seg"],
        also_evaluate_on=[{"dataset": "embedded_natural", "evaluators": ["kmeans_seg"]}],
    )
    trained, evaluation = plan(path, tmp_path)
    trained.status, trained.error = "failed", "boom"
    assert not bind_trained_weights(evaluation, trained, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert evaluation.status == "failed" and "has no finished run" in (evaluation.error or "")
    trained.status, trained.run_id = "finished", "abc123"
    assert bind_trained_weights(evaluation, trained, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert evaluation.config.backbone.init == "runs:/abc123"


def test_also_evaluate_on_evaluates_the_weights_the_cell_trained_and_reruns_skip_it(tmp_path, monkeypatch):
    import torch
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = {**TINY_BASE, "optim": {**TINY_BASE["optim"], "steps": 2}}
    path = write_grid(
        tmp_path / "tiny.yaml",
        base=base,
        set=["objective.options.out_dim=256"],
        objectives=["dino"],
        evaluators=["kmeans_seg"],
        also_evaluate_on=[
            {
                "dataset": {"name": "embedded_natural", "set": ["eval_dataset.options.num_val=8"]},
                "evaluators": ["kmeans_seg"],
            }
        ],
    )
    args = ["grid", str(path), "--tracking-uri", uri, "--experiment", "t"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    client = MlflowClient(tracking_uri=uri)
    runs = {
        r.data.tags["dssl.grid.cell"]: r
        for r in client.search_runs([client.get_experiment_by_name("t").experiment_id])
        if "dssl.grid.cell" in r.data.tags
    }
    trained = runs["dino / vit_cpu8 / embedded"]
    evaluated = runs["dino / vit_cpu8 / embedded @ embedded_natural"]
    assert trained.info.status == evaluated.info.status == "FINISHED"
    assert evaluated.data.tags.get("dssl.evaluation_only") == "true"
    assert "kmeans_seg/miou" in evaluated.data.metrics
    init = evaluated.data.params["init"]
    assert init.endswith("backbone.pt") and Path(trained.data.tags["dssl.output_dir"]) in Path(init).parents
    assert torch.load(init, map_location="cpu", weights_only=True)  # the trained run's backbone weights

    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and second.output.count("skipped (done in run") == 2


# -- the GPU post-training grid ------------------------------------------------------------------------------


@pytest.fixture
def posttrain_data(tmp_path: Path) -> Path:
    """The post-training grid's datasets in their real on-disk layouts: COCO images, VOC 2012, COCO-Stuff."""
    from dssl.data import fixtures

    root = tmp_path / "data"
    for write in (fixtures.write_coco_images, fixtures.write_voc2012, fixtures.write_coco_stuff27):
        write(root)
    return root


def test_posttrain_grid_dry_run_resolves_every_cell_against_fixtures(tmp_path, posttrain_data):
    """Offline: the dry run loads no weights, so the timm checkpoint need not be cached; a local file also works."""
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["grid", str(POSTTRAIN), "--data-root", str(posttrain_data), "--dry-run", "--tracking-uri", uri]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "36 cells" in result.output and "0 done, 36 pending" in result.output

    fake = tmp_path / "dino_deitsmall16_pretrain.pth"
    fake.write_bytes(b"not loaded by a dry run")
    result = CliRunner().invoke(cli, [*args, "--set", f"backbone.init={fake}"])
    assert result.exit_code == 0, result.output


def test_posttrain_grid_standardizes_start_data_budget_and_evaluation(tmp_path, posttrain_data):
    from dssl.runner.build import build_eval_datasets, component_options

    host = get_host()
    cells = plan_grid(
        load_grid(POSTTRAIN),
        host=host,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        experiment="e",
        data_root=str(posttrain_data),
    )
    trained = [c for c in cells if c.cell.checkpoint is None]
    evaluations = [c for c in cells if c.cell.checkpoint is not None]
    methods = {c.cell.objective.key for c in trained}
    assert methods == {"dino", "cotap", "cotap+oaf", "paka", "udi", "stellar"}
    assert len(trained) == len(evaluations) == 18
    for item in trained:
        config = item.config
        assert (config.backbone.name, config.backbone.init) == ("vit_small_patch16_224.dino", "timm")
        assert config.optim.steps * config.optim.batch_size == POSTTRAIN_IMAGES, item.cell.label
        assert config.dataset.name == "imagefolder" and config.dataset.options["train_split"] == "train2017"
        assert config.eval_dataset is not None and config.eval_dataset.name == "voc2012"
        assert config.evaluators == ["linear_seg", "hummingbird", "overcluster_neco"]
        assert config.backbone.options["img_size"] == 224
        assert config.augmentation.options["global_size"] == 224 and config.augmentation.options["local_size"] == 96
    for item in evaluations:
        assert item.config.eval_dataset is not None and item.config.eval_dataset.name == "coco_stuff27"
        assert item.config.evaluators == ["linear_seg"]
        assert item.config.backbone.init == f"{CELL_INIT_PREFIX}{cells[item.cell.evaluates or 0].fingerprint}"
    # Every dataset a cell reads builds from the fixtures in the real layouts.
    for item in (trained[0], evaluations[0]):
        config = item.config
        entry = host.get("dataset", config.dataset.name)
        train = entry.load()(component_options(entry, config.dataset.options), split="train", data_root=posttrain_data)
        assert len(train) == 3
        eval_train, eval_val = build_eval_datasets(config.model_copy(update={"data_root": str(posttrain_data)}), host)
        assert len(eval_train) > 0 and len(eval_val) > 0
