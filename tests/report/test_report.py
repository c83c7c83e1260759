"""`dssl report`: figures of real (tiny) runs exist, are the right size and are not blank; logged to MLflow."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from PIL import Image

TINY = [
    "dataset.options.size=32",
    "dataset.options.num_train=8",
    "eval_dataset.options.size=32",
    "eval_dataset.options.num_train=8",
    "eval_dataset.options.num_val=4",
    "augmentation.options.global_size=32",
    "augmentation.options.local_size=16",
    "augmentation.options.n_local=2",
    "optim.batch_size=4",
    "optim.steps=2",
    "optim.warmup_steps=1",
    "log_every=1",
    "objective.options.out_dim=64",
    "objective.options.hidden_dim=32",
    "objective.options.bottleneck_dim=16",
    "evaluators=[kmeans_seg]",
    "evaluator_options.kmeans_seg.seeds=[0]",
    "evaluator_options.kmeans_seg.n_init=1",
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    import os

    import dssl

    folder = tmp_path_factory.mktemp("report")
    previous = os.getcwd()
    os.chdir(folder)  # MLflow puts the artifacts of a sqlite store under ./mlruns
    try:
        uri = f"sqlite:///{folder}/mlflow.db"
        for seed in (0, 1):
            dssl.bench(
                objective="dino",
                backbone="vit_t16",
                seed=seed,
                tracking_uri=uri,
                experiment="report-test",
                sets=[*TINY, f"output_dir={folder}/runs"],
            )
    finally:
        os.chdir(previous)
    return uri, str(folder)


def _png(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def test_report_of_an_experiment_writes_and_logs_non_trivial_figures(
    experiment: tuple[str, str], tmp_path, monkeypatch
) -> None:
    from mlflow import MlflowClient

    uri, folder = experiment
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "report-test", "--tracking-uri", uri, "--output", str(out)])
    assert result.exit_code == 0, result.output
    # panels of 5.0 x 3.6 (metrics) and 6.0 x 3.6 inches (training) at 100 dpi
    for name, panel_width in [("metrics.png", 500), ("training.png", 600)]:
        pixels = _png(str(out / name))
        assert pixels.shape[0] % 360 == 0 and pixels.shape[1] % panel_width == 0
        assert pixels.std() > 0.01  # not blank
    pca = _png(str(out / "pca_feature_maps.png"))
    segmentation = _png(str(out / "segmentations.png"))
    # inputs + one backbone (two seeds of one method share a row); inputs, truth, probe and k-means rows
    assert pca.shape[0] > 200 and segmentation.shape[0] > pca.shape[0]
    assert pca.std() > 0.05 and segmentation.std() > 0.05
    page = (out / "report.html").read_text()
    assert "pca_feature_maps.png" in page and "dino" in page
    client = MlflowClient(uri)
    (report_run,) = client.search_runs(
        [client.get_experiment_by_name("report-test").experiment_id], "tags.`dssl.report` = 'true'"
    )
    logged = {a.path for a in client.list_artifacts(report_run.info.run_id, "report")}
    assert {"report/report.html", "report/metrics.png", "report/pca_feature_maps.png"} <= logged


def test_report_of_one_run_is_logged_to_that_run(experiment: tuple[str, str], tmp_path, monkeypatch) -> None:
    from dssl.host import get_host
    from dssl.report.build import build_report
    from mlflow import MlflowClient

    uri, folder = experiment
    monkeypatch.chdir(folder)
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("report-test").experiment_id], "params.seed = '1'")[0]
    files = build_report(run.info.run_id, tracking_uri=uri, output_dir=tmp_path, host=get_host(), num_images=2)
    assert files.run_id == run.info.run_id
    assert set(files.images) == {"metrics", "training", "pca", "segmentation"}
    assert "report/report.html" in {a.path for a in client.list_artifacts(run.info.run_id, "report")}


def test_unknown_target_is_one_clear_line(experiment: tuple[str, str]) -> None:
    uri, _ = experiment
    result = CliRunner().invoke(cli, ["report", "no-such-thing", "--tracking-uri", uri, "--no-log"])
    assert result.exit_code == 2
    assert "no MLflow run or experiment named 'no-such-thing'" in result.output


def _fake_run(run_id: str, seed: int, steps: int, value: float, start: int) -> object:
    from types import SimpleNamespace

    params = {"objective": "dino", "backbone": "vit_t16", "dataset": "embedded", "seed": str(seed), "steps": str(steps)}
    tags = {"dssl.protocol.kmeans_seg": "kmeans_seg@1", "dssl.dataset.kmeans_seg": "embedded"}
    data = SimpleNamespace(params=params, tags=tags, metrics={"kmeans_seg/miou": value})
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, start_time=start, status="FINISHED"), data=data)


def test_report_bars_are_leaderboard_rows_never_two_budgets_in_one_bar() -> None:
    from dssl.report.runs import metric_groups, representatives

    runs = [_fake_run("a", 0, 2, 10.0, 1), _fake_run("b", 0, 3, 14.0, 2), _fake_run("c", 1, 3, 16.0, 3)]
    (groups,) = metric_groups(runs).values()
    assert [(g.variant, g.mean, g.n) for g in groups] == [("steps=2", 10.0, 1), ("steps=3", 15.0, 2)]
    assert groups[1].label == "dino\nvit_t16\nsteps=3"
    assert [(run.info.run_id, label) for run, label in representatives(runs)] == [
        ("a", "dino vit_t16 [steps=2]"),
        ("b", "dino vit_t16 [steps=3]"),
    ]
