"""Grids leaving this process: submitit jobs (local executor), a team MLflow server, concurrent writers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from test_grid import TINY_BASE, mlflow_runs, write_grid

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _children(uri: str, experiment: str) -> tuple[object, list[object]]:
    runs = mlflow_runs(uri, experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def test_submitit_local_executor_runs_every_cell_as_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "jobs.yaml",
        base={**TINY_BASE, "output_dir": str(tmp_path / "runs")},
        objectives=["dino"],
        evaluators=["kmeans_seg"],
        seeds=[0, 1],
        launcher={"name": "submitit", "cluster": "local", "timeout_min": 10},
    )
    result = CliRunner().invoke(cli, ["grid", str(path), "--tracking-uri", uri, "--experiment", "jobs"])
    assert result.exit_code == 0, result.output
    _, children = _children(uri, "jobs")
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "kmeans_seg/miou" in r.data.metrics for r in children)
    logs = list((tmp_path / "runs" / "grid-logs" / "jobs" / "submitit").glob("*_log.out"))
    assert len(logs) == 2  # one submitit job (own process, own log) per cell


def test_a_failing_submitit_job_is_a_failed_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_grid(
        tmp_path / "bad.yaml",
        base={**TINY_BASE, "output_dir": str(tmp_path / "runs")},
        objectives=["dino"],
        evaluators=["kmeans_seg"],
        set=[f"backbone.init={tmp_path / 'missing.pt'}"],
        launcher={"name": "submitit", "cluster": "local"},
    )
    result = CliRunner().invoke(cli, ["grid", str(path), "--tracking-uri", uri, "--experiment", "bad"])
    assert result.exit_code == 1
    assert "1 of 1 grid cells failed" in result.output and "missing.pt" in result.output
    _, children = _children(uri, "bad")
    assert [r.info.status for r in children] == ["FAILED"]


def _job_task_pid(folder: Path) -> int | None:
    """The process running a submitit job's task (``python -m submitit.core._submit <folder>``), if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in command and str(folder).encode() in command:
            return int(entry.name)
    return None


def _preempt_when_training_starts(runs: Path, jobs: Path, sent: list[int]) -> None:
    """What a cluster does to a job: once the cell's run exists, send submitit's preemption signal to the job."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        pid = _job_task_pid(jobs)
        if pid is not None and next(runs.glob("*/*/run.json"), None) is not None:
            os.kill(pid, signal.SIGUSR2)
            sent.append(pid)
            return
        time.sleep(0.05)


def test_submitit_requeues_a_preempted_cell_that_resumes_in_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit")
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finding the job's process needs /proc")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    steps = 12  # the signal arrives within the first steps; the rest runs in the requeued job
    path = write_grid(
        tmp_path / "preempt.yaml",
        base={**TINY_BASE, "output_dir": str(tmp_path / "runs"), "optim": {"steps": steps, "batch_size": 2}},
        set=["objective.options.out_dim=64", "dataset.options.size=32"],
        objectives=["dino"],
        evaluators=["kmeans_seg"],
        launcher={"name": "submitit", "cluster": "local", "timeout_min": 30},
    )
    jobs = tmp_path / "runs" / "grid-logs" / "preempt" / "submitit"
    sent: list[int] = []
    watcher = threading.Thread(target=_preempt_when_training_starts, args=(tmp_path / "runs", jobs, sent), daemon=True)
    watcher.start()
    result = CliRunner().invoke(cli, ["grid", str(path), "--tracking-uri", uri, "--experiment", "preempt"])
    watcher.join(timeout=5)

    assert sent, "the job was never signalled"
    assert result.exit_code == 0, result.output
    _, (child,) = _children(uri, "preempt")
    assert child.info.status == "FINISHED" and "kmeans_seg/miou" in child.data.metrics
    preempted_at = child.data.tags["dssl.preempted"]  # the first job's run, continued by the requeued job
    assert preempted_at.startswith("SIGUSR2 at step ")
    assert child.data.tags["dssl.resumed_from_step"] == preempted_at.removeprefix("SIGUSR2 at step ")
    from mlflow import MlflowClient

    history = MlflowClient(uri).get_metric_history(child.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
    log = "".join(p.read_text() for p in jobs.glob("*_log.*"))
    assert "Requeued job" in log


@pytest.fixture
def mlflow_server(mlflow_servers: Callable[..., Any]) -> str:
    return str(mlflow_servers().url)


def test_grid_against_a_team_mlflow_server(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    path = write_grid(
        tmp_path / "team.yaml",
        base={**TINY_BASE, "output_dir": str(tmp_path / "runs")},
        objectives=["dino"],
        evaluators=["kmeans_seg"],
    )
    args = ["grid", str(path), "--tracking-uri", mlflow_server, "--experiment", "team"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    _, (child,) = _children(mlflow_server, "team")
    assert child.info.status == "FINISHED" and "kmeans_seg/miou" in child.data.metrics
    artifacts = {a.path for a in MlflowClient(mlflow_server).list_artifacts(child.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/backbone.pt"}  # uploaded through the server, not a local path
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "1 done, 0 to run" in second.output


WRITER = """
import sys
from dssl.tracking.mlflow_tracker import MlflowTracker
uri, experiment, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(count):
    with MlflowTracker(tracking_uri=uri, experiment=experiment, run_name=f"{name}-{i}") as run:
        run.log_params({"writer": name, "i": i})
        run.log_metrics({"train/loss": float(i)}, step=0)
"""


def test_two_processes_logging_to_one_store_lose_no_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    # The store and experiment exist before the writers race (as when a grid's parent run created them).
    subprocess.run([sys.executable, str(script), uri, "race", "setup", "1"], check=True, env=env)
    writers = [
        subprocess.Popen([sys.executable, str(script), uri, "race", name, "8"], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    errors = [w.communicate(timeout=300)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    runs = mlflow_runs(uri, "race")
    names = sorted(r.info.run_name for r in runs if r.data.params.get("writer") in ("a", "b"))
    assert names == sorted(f"{w}-{i}" for w in ("a", "b") for i in range(8))
    assert all(r.info.status == "FINISHED" and r.data.metrics["train/loss"] >= 0 for r in runs)
