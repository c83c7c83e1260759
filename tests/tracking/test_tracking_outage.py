"""Tracking outages: records queue durably in the run folder, training goes on, the queue replays exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.results import RunResults
from dssl.tracking import mlflow_tracker
from dssl.tracking.mlflow_tracker import MlflowTracker, is_outage
from dssl.tracking.spool import QUEUE_DIR, RecordSpool

from tests.tiny_run import STEPS, write_tiny_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


#: A dataset input record as the runner logs one.
_DATASET = {
    "name": "embedded",
    "digest": "0123456789ab",
    "source_type": "code",
    "source": json.dumps({"tags": {"dssl.dataset": "embedded"}}),
    "profile": json.dumps({"training": {"train": 8}}),
    "context": "training",
}


def _connection_refused() -> Exception:
    from mlflow.exceptions import MlflowException

    return MlflowException(
        "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded (Caused by NewConnectionError("
        "'Failed to establish a new connection: [Errno 111] Connection refused'))"
    )


# -- the queue file ------------------------------------------------------------------------------------------


def test_spool_keeps_records_in_order_ignores_a_torn_line_and_merges_batches_on_replay(tmp_path: Path) -> None:
    spool = RecordSpool(tmp_path / QUEUE_DIR)
    spool.append({"op": "batch", "metrics": [["train/loss", float("nan"), 1, 1]], "params": [], "tags": []})
    spool.append({"op": "batch", "metrics": [["train/loss", 2.0, 2, 2]], "params": [["seed", "0"]], "tags": []})
    spool.append({"op": "text", "text": "x: 1\n", "artifact_file": "config.yaml"})
    spool.append({"op": "batch", "metrics": [["train/loss", 3.0, 3, 3]], "params": [], "tags": []})
    with open(tmp_path / QUEUE_DIR / "queue.jsonl", "a") as handle:
        handle.write('{"op": "batch", "metr')  # a crash in the middle of an append
    assert len(spool.pending()) == 4

    applied: list[dict[str, Any]] = []
    assert spool.replay(applied.append) == 4
    assert [r["op"] for r in applied] == ["batch", "text", "batch"]  # the first two batches went as one
    assert [m[1] for m in applied[0]["metrics"]][1:] == [2.0] and json.dumps(applied[0]["metrics"][0][1]) == "NaN"
    assert spool.pending() == [] and spool.sent() == 4

    spool.append({"op": "terminate", "status": "FINISHED", "end_time_ms": 5})
    failing = [RuntimeError("down")]

    def apply_or_fail(record: dict[str, Any]) -> None:
        if failing:
            raise failing.pop()

    with pytest.raises(RuntimeError):
        spool.replay(apply_or_fail)
    assert [r["op"] for r in spool.pending()] == ["terminate"]  # a failed record stays queued
    assert spool.replay(apply_or_fail) == 1 and spool.pending() == []


def test_outages_are_told_from_refusals() -> None:
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import UNAUTHENTICATED

    assert is_outage(_connection_refused())
    assert is_outage(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "restarting"}))
    assert not is_outage(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "param changed"}))
    assert not is_outage(MlflowException("who are you", error_code=UNAUTHENTICATED))
    assert not is_outage(FileNotFoundError("gone"))


# -- the tracker's degraded mode -----------------------------------------------------------------------------


def test_tracker_queues_while_the_store_fails_and_replays_each_record_once(
    tracking_uri: str, new_experiment: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = {"now": False}
    real_apply = mlflow_tracker.apply_record

    def flaky_apply(client: Any, run_id: str, record: dict[str, Any]) -> None:
        if down["now"]:
            raise _connection_refused()
        real_apply(client, run_id, record)

    monkeypatch.setattr(mlflow_tracker, "apply_record", flaky_apply)
    lines: list[str] = []
    experiment = new_experiment()
    with MlflowTracker(tracking_uri=tracking_uri, experiment=experiment) as tracker:
        tracker.attach_queue(tmp_path / QUEUE_DIR, notify=lines.append, retry_every_s=0.05, flush_timeout_s=30)
        tracker.log_metrics({"train/loss": 1.0}, step=1)
        down["now"] = True
        tracker.log_metrics({"train/loss": 2.0}, step=2)  # fails: queued, no exception
        tracker.log_params({"objective": "dino"})
        tracker.log_text("hello\n", "notes.txt")
        tracker.log_dataset_inputs([_DATASET])
        tracker.set_description("**dino** on vit_t16")
        assert tracker.waiting == 5
        assert lines[0].startswith(f"tracking degraded: {tracking_uri} is unreachable ([Errno 111] Connection refused)")
        assert lines[0].endswith("(1 waiting)")
        down["now"] = False
        deadline = time.monotonic() + 30
        while tracker.waiting and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tracker.waiting == 0 and lines[-1].startswith("tracking recovered")
        tracker.log_metrics({"train/loss": 3.0}, step=3)  # healthy again: straight to the store
        run_id = tracker.run_id
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"objective": "dino"}
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert run.data.tags["mlflow.note.content"] == "**dino** on vit_t16"
    assert [(i.dataset.name, i.tags[0].value) for i in run.inputs.dataset_inputs] == [("embedded", "training")]
    # Replaying the whole queue again (an upload interrupted before it was counted) adds nothing.
    spool = RecordSpool(tmp_path / QUEUE_DIR)
    spool.mark_sent(0)
    spool.replay(lambda record: real_apply(client, run_id, record))
    assert len(client.get_metric_history(run_id, "train/loss")) == 3
    assert len(client.get_run(run_id).inputs.dataset_inputs) == 1


def test_a_refused_request_still_raises(tracking_uri: str, new_experiment: Callable[[], str], tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    with MlflowTracker(tracking_uri=tracking_uri, experiment=new_experiment()) as tracker:
        tracker.attach_queue(tmp_path / QUEUE_DIR)
        tracker.log_params({"seed": 0})
        with pytest.raises(MlflowException):
            tracker.log_params({"seed": 1})  # params are immutable: a refusal, not an outage
        assert tracker.waiting == 0


def test_credentials_in_the_tracking_uri_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "--tracking-uri", "http://alice:s3cret@127.0.0.1:5000", "--steps", "1", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "tracking.uri: credentials in the URI (http://…@127.0.0.1)" in result.output
    assert "MLFLOW_TRACKING_USERNAME" in result.output and "s3cret" not in result.output


# -- a real server that goes away ----------------------------------------------------------------------------

PAUSING_CHILD = """
import time
from pathlib import Path
from dssl.objectives.dino import DINOObjective
original = DINOObjective.after_step
def after_step(self, *, step):
    original(self, step=step)
    # Before the metrics of step `step + 1` are logged: say so, and wait for the test's go.
    here, go = Path({folder!r}) / f"at-{{step + 1}}", Path({folder!r}) / f"go-{{step + 1}}"
    if {pauses!r}.count(step + 1):
        here.touch()
        deadline = time.monotonic() + 300
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
DINOObjective.after_step = after_step
from dssl.cli.main import cli
cli(["bench", "--config", {config!r}])
"""


def _config(tmp_path: Path, uri: str, *, flush_timeout_s: float) -> Path:
    tracking = {"uri": uri, "experiment": "outage", "retry_every_s": 0.2, "flush_timeout_s": flush_timeout_s}
    return write_tiny_run(tmp_path, checkpoint_every=0, tracking=tracking)


class PausingRun:
    """``dssl bench`` in a child process that stops before logging the given steps until the test says go."""

    def __init__(self, tmp_path: Path, config: Path, pauses: list[int]) -> None:
        self.folder = tmp_path
        script = PAUSING_CHILD.format(folder=str(tmp_path), pauses=pauses, config=str(config))
        # MLflow's own retries (about 4 minutes by default) are what dssl's queue takes over from; a test has
        # no time for them.
        env = os.environ | {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
            "OMP_NUM_THREADS": "1",
        }
        self.stderr_path = tmp_path / "stderr.txt"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, what: Callable[[], bool], description: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while not what():
            assert self.process.poll() is None, f"the run ended before {description}: {self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {description}: {self.stderr[-3000:]}"
            time.sleep(0.05)

    def pause_at(self, step: int) -> None:
        self.wait_for((self.folder / f"at-{step}").exists, f"the pause before step {step}")

    def go(self, step: int) -> None:
        (self.folder / f"go-{step}").touch()

    def finish(self) -> int:
        try:
            return self.process.wait(timeout=300)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    @property
    def run_dir(self) -> Path:
        (info,) = (self.folder / "runs").glob("*/*/run.json")
        return info.parent


def _check_logged_exactly_once(uri: str, run_dir: Path) -> None:
    """FINISHED, every training step of every training metric once, every evaluation metric once, the artifacts."""
    client = _client(uri)
    results = RunResults.read(run_dir / "results.json")
    run = client.get_run(results.run.run_id)
    assert run.info.status == "FINISHED"
    train = [k for k in run.data.metrics if k.startswith("train/")]
    assert "train/loss" in train
    for key in train:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(1, STEPS + 1))
    evaluated = {f"{e.evaluator}/{k}": m.value for e in results.evaluations for k, m in e.metrics.items()}
    for key, value in evaluated.items():
        assert [m.value for m in client.get_metric_history(run.info.run_id, key)] == [pytest.approx(value)]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "results.json", "evaluations", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/backbone.pt"]


@pytest.fixture(scope="module")
def server(mlflow_servers: Callable[..., Any]) -> Any:
    """One server for the module (each start costs 10-30 s); every test leaves it running."""
    return mlflow_servers()


def test_a_server_restarted_mid_run_ends_with_every_metric_logged_exactly_once(tmp_path: Path, server: Any) -> None:
    run = PausingRun(tmp_path, _config(tmp_path, server.url, flush_timeout_s=120), pauses=[3, 5])
    run.pause_at(3)  # steps 1 and 2 are logged
    server.stop()
    run.go(3)
    run.pause_at(5)  # steps 3 and 4 were trained while the server was down
    run.wait_for(lambda: "tracking degraded" in run.stderr, "the degraded-tracking notice")
    server.start()
    run.wait_for(lambda: "tracking recovered" in run.stderr, "the queue's replay")  # still within training
    run.go(5)
    assert run.finish() == 0, run.stderr

    stderr = run.stderr
    assert f"tracking degraded: {server.url} is unreachable ([Errno 111] Connection refused)" in stderr
    assert "(1 waiting)" in stderr and "tracking recovered" in stderr
    _check_logged_exactly_once(server.url, run.run_dir)
    spool = RecordSpool(run.run_dir / QUEUE_DIR)
    assert spool.records() and spool.pending() == []


def test_a_server_down_to_the_end_leaves_a_queue_that_dssl_sync_uploads(tmp_path: Path, server: Any) -> None:
    run = PausingRun(tmp_path, _config(tmp_path, server.url, flush_timeout_s=1), pauses=[3])
    run.pause_at(3)
    server.stop()
    run.go(3)
    assert run.finish() == 0, run.stderr  # training and evaluation finished; their results are on disk

    run_dir = run.run_dir
    assert f"Upload them with: dssl sync {run_dir}" in run.stderr
    assert (run_dir / "results.json").is_file() and (run_dir / "checkpoints" / "backbone.pt").is_file()
    server.start()
    run_id = RunResults.read(run_dir / "results.json").run.run_id
    before = _client(server.url).get_run(run_id)
    assert before.info.status == "RUNNING" and "kmeans_seg/miou" not in before.data.metrics

    synced = CliRunner().invoke(cli, ["sync", str(run_dir)])
    assert synced.exit_code == 0, synced.output
    assert f"uploaded {len(RecordSpool(run_dir / QUEUE_DIR).records())} records to MLflow run {run_id}" in synced.output
    _check_logged_exactly_once(server.url, run_dir)
    again = CliRunner().invoke(cli, ["sync", str(run_dir)])
    assert again.exit_code == 0 and "nothing to upload" in again.output
