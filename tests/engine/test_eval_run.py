"""`dssl eval`: weights evaluated without training, logged like a bench run, a leaderboard row of their own."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.results import RunResults
from tiny_config import TINY_SETS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Tiny evaluation (and training, for the run whose checkpoint is evaluated): k-means on 16/8 images.
TINY = [
    *TINY_SETS,
    "eval_dataset.options.size=32",
    "eval_dataset.options.num_train=16",
    "eval_dataset.options.num_val=8",
    "optim.steps=2",
    "evaluator_options.kmeans_seg.seeds=[0]",
    "evaluator_options.kmeans_seg.n_init=1",
]
SETS = [arg for assignment in TINY for arg in ("--set", assignment)]


def _run(uri: str, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(uri).get_run(run_id)


def _invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def _run_id(output: str) -> str:
    return next(line.split()[2] for line in output.splitlines() if line.startswith("MLflow run "))


@dataclass
class Finished:
    """A tiny trained run, random init evaluated, and the trained run's checkpoint evaluated, in one store."""

    uri: str
    trained: str
    random_init: str
    checkpoint: str
    random_output: str


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    folder = tmp_path_factory.mktemp("eval")
    uri = f"sqlite:///{folder}/mlflow.db"
    previous_cwd, previous_uri = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(folder)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        trained = _run_id(_invoke("bench", "--backbone", "vit_t16", "--eval", "kmeans_seg", *SETS).output)
        random_output = _invoke(
            "eval", "--backbone", "vit_t16", "--init", "random", "--eval", "kmeans_seg", *SETS
        ).output
        ckpt_args = ["--init", f"runs:/{trained}", "--label", "tiny-dino", "--eval", "kmeans_seg"]
        checkpoint = _run_id(_invoke("eval", "--backbone", "vit_t16", *ckpt_args, *SETS).output)
        yield Finished(uri, trained, _run_id(random_output), checkpoint, random_output)
    finally:
        os.chdir(previous_cwd)
        if previous_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_uri


def test_random_init_and_a_finished_runs_checkpoint_are_evaluated_without_training_as_rows_of_their_own(
    finished: Finished, monkeypatch: pytest.MonkeyPatch
):
    from mlflow import MlflowClient

    store, trained_id, random_id, checkpoint_id = (
        finished.uri,
        finished.trained,
        finished.random_init,
        finished.checkpoint,
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert "dssl eval random init on vit_t16, embedded" in finished.random_output
    assert "nothing trained" in finished.random_output
    for run_id, label in [(random_id, "random init"), (checkpoint_id, "tiny-dino")]:
        run = _run(store, run_id)
        assert run.info.status == "FINISHED"
        tags, params = run.data.tags, run.data.params
        assert tags["dssl.evaluation_only"] == "true" and tags["dssl.method"] == label
        assert params["label"] == label and params["steps"] == "0" and "objective" not in params
        assert not any(key.startswith("train/") for key in run.data.metrics)  # nothing was trained
        artifacts = {a.path for a in MlflowClient(store).list_artifacts(run_id)}
        assert {"config.yaml", "results.json"} <= artifacts and "checkpoints" not in artifacts
    assert _run(store, checkpoint_id).data.params["init"] == f"runs:/{trained_id}"

    # The checkpoint evaluated as it is gives the very number its own run measured after training.
    trained = _run(store, trained_id).data.metrics["kmeans_seg/miou"]
    assert _run(store, checkpoint_id).data.metrics["kmeans_seg/miou"] == pytest.approx(trained, abs=1e-9)
    local = RunResults.read(f"{_run(store, checkpoint_id).data.tags['dssl.output_dir']}/results.json")
    assert local.label == "tiny-dino" and local.train == {} and local.checkpoint is None

    board = _invoke("leaderboard", "--format", "json", "--metric", "kmeans_seg/miou")
    rows = {r["objective"]: r for r in json.loads(board.output)}
    assert set(rows) == {"dino", "random init", "tiny-dino"}
    assert [rows[m]["run_ids"] for m in ("dino", "random init", "tiny-dino")] == [
        [trained_id],
        [random_id],
        [checkpoint_id],
    ]
    assert rows["random init"]["evaluation_only"] and not rows["dino"]["evaluation_only"]
    table = _invoke("leaderboard", "--metric", "kmeans_seg/miou").output
    assert "random init (eval only)" in table and "tiny-dino (eval only)" in table


def test_finished_runs_read_back_through_mlflow_have_a_description_dataset_inputs_and_a_leaderboard_table(
    finished: Finished,
):
    from mlflow import MlflowClient

    client = MlflowClient(finished.uri)
    trained = client.get_run(finished.trained)
    miou = trained.data.metrics["kmeans_seg/miou"]
    description = trained.data.tags["mlflow.note.content"]
    assert description.startswith("**dino** on vit_t16: trained 2 steps × 4 images on `embedded`")
    assert f"kmeans_seg@1 miou **{miou:.2f}" in description  # the headline number with its protocol
    inputs = {i.dataset.name + ":" + i.tags[0].value: i.dataset for i in trained.inputs.dataset_inputs}
    assert set(inputs) == {"embedded:training", "embedded:evaluation"}  # other options: two datasets
    profile = json.loads(inputs["embedded:evaluation"].profile)
    assert profile["evaluation"] == {"train": 16, "val": 8} and profile["options"]["num_val"] == 8
    assert json.loads(inputs["embedded:training"].profile)["training"] == {"train": 8}
    evaluated = client.get_run(finished.random_init)
    assert (
        "**random init** on vit_t16: evaluated as it is, nothing trained" in evaluated.data.tags["mlflow.note.content"]
    )
    assert [i.tags[0].value for i in evaluated.inputs.dataset_inputs] == ["evaluation"]
    experiment = client.get_experiment(trained.info.experiment_id)
    assert "dssl benchmark runs" in experiment.tags["mlflow.note.content"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI shows training runs

    logged = CliRunner().invoke(cli, ["leaderboard", "--tracking-uri", finished.uri, "--experiment", "dssl", "--log"])
    assert logged.exit_code == 0, logged.output
    (board,) = client.search_runs([trained.info.experiment_id], "tags.`dssl.leaderboard` = 'true'")
    assert json.loads(board.data.tags["mlflow.loggedArtifacts"]) == [{"path": "leaderboard.json", "type": "table"}]
    table = json.loads(Path(client.download_artifacts(board.info.run_id, "leaderboard.json")).read_text())
    rows = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    ranked = [r for r in rows if r["metric"] == "kmeans_seg/miou"]
    assert {r["method"] for r in ranked} == {"dino", "random init (eval only)", "tiny-dino (eval only)"}
    assert next(r for r in ranked if r["method"] == "dino")["mean"] == pytest.approx(miou, abs=1e-4)
    assert "| random init (eval only) |" in board.data.tags["mlflow.note.content"]
    experiment = client.get_experiment(trained.info.experiment_id)
    assert (
        f"#/experiments/{experiment.experiment_id}/runs/{board.info.run_id}" in experiment.tags["mlflow.note.content"]
    )
    # Logging again updates the same run instead of adding one, and the leaderboard never ranks it.
    again = CliRunner().invoke(cli, ["leaderboard", "--tracking-uri", finished.uri, "--experiment", "dssl", "--log"])
    assert again.exit_code == 0
    assert len(client.search_runs([trained.info.experiment_id], "tags.`dssl.leaderboard` = 'true'")) == 1
    assert "leaderboard" not in _invoke("leaderboard", "--tracking-uri", finished.uri, "--format", "csv").output


def test_evaluation_only_runs_differ_in_what_they_evaluate_not_in_training_settings():
    from dssl.api import resolve

    base = {"device": "cpu", "evaluators": ["kmeans_seg"], "backbone": {"init": "random"}}
    one = resolve(base)
    other_training = resolve(base | {"optim": {"steps": 7}, "objective": {"name": "dino"}})
    assert one.fingerprint(trained=False) == other_training.fingerprint(trained=False)
    assert one.row_key("kmeans_seg", trained=False) == other_training.row_key("kmeans_seg", trained=False)
    assert one.fingerprint() != other_training.fingerprint()  # a trained run's numbers do depend on them
    other_weights = resolve(base | {"backbone": {"init": "timm"}})
    assert one.row_key("kmeans_seg", trained=False) != other_weights.row_key("kmeans_seg", trained=False)


def test_eval_needs_weights_and_a_label_that_names_them(store):
    missing = CliRunner().invoke(cli, ["eval", "--backbone", "vit_t16", "--dry-run"])
    assert missing.exit_code == 2 and "--init" in missing.output
    blank = CliRunner().invoke(cli, ["eval", "--init", "random", "--label", " ", "--dry-run"])
    assert blank.exit_code == 2 and "--label" in blank.output
    bad = CliRunner().invoke(cli, ["eval", "--init", "no-such-checkpoint.pt", "--eval", "kmeans_seg", *SETS])
    assert bad.exit_code == 2 and "no-such-checkpoint.pt" in bad.output


def test_random_init_evaluated_is_the_network_a_random_init_run_of_that_seed_starts_from():
    from dssl import api
    from dssl.host import get_host
    from dssl.runner import build_eval_run, build_run

    config = api.resolve({"device": "cpu", "seed": 3}, sets=[*TINY, "baselines=[start]", "backbone.init=random"])
    started = build_run(config, get_host()).start_backbone.state_dict()
    evaluated = build_eval_run(config, get_host()).backbone.state_dict()
    assert started.keys() == evaluated.keys()
    assert all(bool((started[key] == evaluated[key]).all()) for key in started)
