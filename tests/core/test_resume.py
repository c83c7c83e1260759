"""Crash-safe resume: ``dssl bench --resume`` continues an interrupted run exactly, in the same MLflow run.

Interruptions: ``kill -9``, a crash, a preemption signal (the run checkpoints and exits 75), Ctrl-C.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner
from dssl import api
from dssl.cli.main import cli
from dssl.engine.loader import EndlessSampler
from dssl.errors import RunFailedError
from dssl.results import RunResults

from tests.tiny_run import STEPS, tiny_run_config, write_tiny_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tiny_config(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """The tiny run (6 steps, checkpoints every 2) in the experiment ``resume``."""
    return tiny_run_config(tmp_path, experiment="resume", **changes)


def write_config(tmp_path: Path, **changes: Any) -> Path:
    return write_tiny_run(tmp_path, experiment="resume", **changes)


def client(tmp_path: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def only_runs(tmp_path: Path) -> list[Any]:
    """The runs of the experiment, newest first."""
    found = client(tmp_path).get_experiment_by_name("resume")
    return list(client(tmp_path).search_runs([found.experiment_id], order_by=["attributes.start_time DESC"]))


def only_run(tmp_path: Path) -> Any:
    (run,) = only_runs(tmp_path)
    return run


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def numbers(results: RunResults) -> dict[str, float]:
    """The train loss and every evaluation metric of a run."""
    found = {"train/loss": results.train["loss"]}
    for evaluation in results.evaluations:
        found |= {f"{evaluation.evaluator}/{k}": v.value for k, v in evaluation.metrics.items()}
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The numbers of the same run, never interrupted."""
    tmp_path = tmp_path_factory.mktemp("reference")
    return numbers(api.run(api.resolve(write_config(tmp_path))))


def fail_after(monkeypatch: pytest.MonkeyPatch, failing_step: int) -> None:
    """Make the run crash in step ``failing_step`` (0-based), after the checkpoints before it."""
    from dssl.objectives.dino import DINOObjective

    original = DINOObjective.after_step

    def after_step(self: Any, *, step: int) -> None:
        if step == failing_step:
            raise RuntimeError("simulated crash")
        original(self, step=step)

    monkeypatch.setattr(DINOObjective, "after_step", after_step)


# -- the sampler -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 3, 5, 7, 12])
def test_sampler_started_late_yields_the_same_draws(start):
    full = EndlessSampler(5, seed=1)
    late = EndlessSampler(5, seed=1, start=start)
    expected = [d for _, d in zip(range(start + 11), full, strict=False)][start:]
    assert [d for _, d in zip(range(11), late, strict=False)] == expected


# -- resuming ----------------------------------------------------------------------------------------------


def test_sigkilled_run_resumes_in_the_same_mlflow_run_with_the_same_numbers(tmp_path, reference):
    config = write_config(tmp_path)
    # The child sleeps after each step past the first checkpoint, so the kill lands mid-training.
    script = textwrap.dedent(
        f"""
        import sys, time
        from dssl.objectives.dino import DINOObjective
        original = DINOObjective.after_step
        def after_step(self, *, step):
            original(self, step=step)
            if step >= 2:
                time.sleep(1.0)
        DINOObjective.after_step = after_step
        from dssl.cli.main import cli
        cli(["bench", "--config", {str(config)!r}])
        """
    )
    env = os.environ | {"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        last = None
        while last is None:
            assert child.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            last = next((tmp_path / "runs").glob("*/*/checkpoints/last.pt"), None)
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    step = torch.load(last, weights_only=True)["step"]
    assert step in (2, 4)
    run = only_run(tmp_path)
    assert run.info.status == "RUNNING"  # SIGKILL left no chance to mark it

    outcome = invoke("bench", "--resume", run.info.run_id, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert outcome.exit_code == 0, outcome.output

    resumed = RunResults.read(last.parent.parent / "results.json")
    assert numbers(resumed) == pytest.approx(reference, abs=1e-6, rel=0)
    after = only_run(tmp_path)  # still one run: the same one, now finished
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["dssl.resumed_from_step"] == str(step)
    history = client(tmp_path).get_metric_history(run.info.run_id, "train/loss")
    assert {m.step for m in history} == set(range(1, STEPS + 1))
    assert after.data.metrics["train/loss"] == pytest.approx(reference["train/loss"], abs=1e-6)


def test_failed_run_resumes_from_its_folder_ignoring_a_torn_temporary_checkpoint(tmp_path, reference, monkeypatch):
    config = api.resolve(write_config(tmp_path))
    with monkeypatch.context() as patch:
        fail_after(patch, failing_step=4)  # checkpoints after steps 2 and 4 exist
        with pytest.raises(RunFailedError, match="simulated crash"):
            api.run(config)
    run = only_run(tmp_path)
    assert run.info.status == "FAILED" and "dssl.error" in run.data.tags
    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.pt")
    torn = last.with_suffix(".pt.tmp")
    torn.write_bytes(b"PK\x03\x04 torn in the middle of a write")

    outcome = invoke("bench", "--resume", str(last.parent.parent))
    assert outcome.exit_code == 0, outcome.output
    assert not torn.exists()
    resumed = RunResults.read(last.parent.parent / "results.json")
    assert numbers(resumed) == pytest.approx(reference, abs=1e-6, rel=0)
    after = only_run(tmp_path)
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    assert "dssl.error" not in after.data.tags and after.data.tags["dssl.resumed_from_step"] == "4"


SLOW_CHILD = """
import signal, sys, time
from pathlib import Path
# As in a terminal's foreground job: a shell starts background jobs (CI runners, nohup) with SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler; Ctrl-C reaches an interactive run, which this child stands for.
signal.signal(signal.SIGINT, signal.default_int_handler)
from dssl.objectives.dino import DINOObjective
original = DINOObjective.after_step
def after_step(self, *, step):
    original(self, step=step)
    if step == 2:  # the third step: tell the test, then give its signal time to arrive within the step
        Path({marker!r}).touch()
        time.sleep(3.0)
DINOObjective.after_step = after_step
from dssl.cli.main import cli
cli(["bench", "--config", {config!r}])
"""


def interrupt_in_third_step(
    tmp_path: Path, signum: int, *, whole_group: bool = False, **changes: Any
) -> tuple[int, str]:
    """Run ``dssl bench`` in a child process, send it ``signum`` during its third step; exit code and stderr.

    Args:
        whole_group: Send the signal to the child's whole process group (its loader workers too), as a cluster's
            scheduler does, instead of to the child alone.
        changes: Top-level keys of the tiny run to replace.
    """
    config, marker = write_config(tmp_path, **changes), tmp_path / "in-step-3"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_CHILD.format(marker=str(marker), config=str(config))],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=whole_group,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, f"the run ended before its third step: {child.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the run did not reach its third step"
            time.sleep(0.02)
        if whole_group:
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, stderr


def test_sigterm_checkpoints_the_current_step_exits_75_and_resumes_to_the_same_numbers(tmp_path, reference):
    code, stderr = interrupt_in_third_step(tmp_path, signal.SIGTERM)

    assert code == 75, stderr  # the requeue status
    run = only_run(tmp_path)
    assert run.info.status == "KILLED" and "dssl.error" not in run.data.tags
    assert run.data.tags["dssl.preempted"] == "SIGTERM at step 3"
    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.pt")
    assert torch.load(last, weights_only=True)["step"] == 3  # the step it was in, not the last periodic one (2)
    assert (
        f"preempted: stopped by SIGTERM at step 3; checkpoint written, continue with: dssl bench --resume "
        f"{run.info.run_id}" in stderr
    )

    outcome = invoke("bench", "--resume", run.info.run_id, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert outcome.exit_code == 0, outcome.output
    resumed = RunResults.read(last.parent.parent / "results.json")
    assert numbers(resumed) == pytest.approx(reference, abs=1e-6, rel=0)
    after = only_run(tmp_path)
    assert after.info.status == "FINISHED" and after.data.tags["dssl.resumed_from_step"] == "3"
    history = client(tmp_path).get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, STEPS + 1))  # no step lost, none logged twice


def test_sigterm_to_the_process_group_with_loader_workers_still_checkpoints_and_exits_75(tmp_path):
    # A scheduler (SLURM's preemption, scancel) signals every process of the job: the loader workers must leave
    # the signal to the trainer, not die of it and fail the run before the trainer can write its checkpoint.
    optim = {"steps": STEPS, "batch_size": 2, "warmup_steps": 1, "num_workers": 2}
    code, stderr = interrupt_in_third_step(tmp_path, signal.SIGTERM, whole_group=True, optim=optim)

    assert code == 75, stderr
    run = only_run(tmp_path)
    assert run.info.status == "KILLED" and "dssl.error" not in run.data.tags
    assert run.data.tags["dssl.preempted"] == "SIGTERM at step 3"
    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.pt")
    assert torch.load(last, weights_only=True)["step"] == 3


LEAKED_LOADER = """
from torch.utils.data import DataLoader
from dssl.engine.preemption import preemption_safe_worker_init

loader = DataLoader(list(range(64)), batch_size=4, num_workers=2, persistent_workers=True,
                    worker_init_fn=preemption_safe_worker_init(2))
iterator = iter(loader)
next(iterator)
print("exiting with the iterator alive", flush=True)
"""


def test_a_process_whose_loader_workers_outlive_their_iterator_still_exits() -> None:
    # Workers ignore SIGTERM (preemption is the trainer's), which is also how multiprocessing ends its daemonic
    # children at interpreter exit before waiting for them: a loader iterator still alive then (the traceback of a
    # failed run holds it; here a global) once made the process wait forever (a CI run hung after its last test).
    try:
        done = subprocess.run(
            [sys.executable, "-c", LEAKED_LOADER], capture_output=True, text=True, timeout=60, env=os.environ.copy()
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit within 60 s: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    assert "exiting with the iterator alive" in done.stdout
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


def test_ctrl_c_still_ends_the_run_killed_with_exit_130(tmp_path):
    code, stderr = interrupt_in_third_step(tmp_path, signal.SIGINT)

    assert code == 130, stderr
    run = only_run(tmp_path)
    assert run.info.status == "KILLED" and "dssl.preempted" not in run.data.tags


def test_preemption_signals_are_validated(tmp_path):
    config = str(write_config(tmp_path))
    outcome = invoke("bench", "--config", config, "--set", "preempt_signals=[SIGKILL]", "--dry-run")
    assert outcome.exit_code == 2
    assert "preempt_signals: unknown signal 'SIGKILL'; accepted: SIGTERM, SIGUSR1, SIGUSR2, SIGHUP" in outcome.output
    dry = invoke("bench", "--config", config, "--set", "preempt_signals=[usr2]", "--dry-run")
    assert yaml.safe_load(dry.output)["preempt_signals"] == ["SIGUSR2"]


# -- disk faults ---------------------------------------------------------------------------------------------------


def test_a_full_disk_fails_the_run_naming_the_checkpoint_and_keeps_the_previous_one(tmp_path, reference, monkeypatch):
    resource = pytest.importorskip("resource")
    from dssl.engine import checkpoint_io
    from dssl.objectives.dino import DINOObjective
    from rich.console import Console

    monkeypatch.setattr(checkpoint_io, "RETRY_WAITS_S", (0.0,))
    original, limits = DINOObjective.after_step, resource.getrlimit(resource.RLIMIT_FSIZE)

    def after_step(self, *, step):
        original(self, step=step)
        if step == 2:  # the checkpoint of step 2 exists: the disk "fills up" before the one of step 4
            (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.pt")
            resource.setrlimit(resource.RLIMIT_FSIZE, (last.stat().st_size // 2, limits[1]))

    monkeypatch.setattr(DINOObjective, "after_step", after_step)
    output = io.StringIO()
    try:
        with pytest.raises(RunFailedError) as failure:
            api.run(api.resolve(write_config(tmp_path)), console=Console(file=output, width=300))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    monkeypatch.setattr(DINOObjective, "after_step", original)  # the resumed run below must not fill the disk

    (last,) = (tmp_path / "runs").glob("*/*/checkpoints/last.pt")
    message = str(failure.value)
    assert f"cannot write the checkpoint {last} ([Errno 27] File too large; 2 attempts)" in message
    assert f"the previous checkpoint {last} is intact" in message and "dssl bench --resume" in message
    assert f"writing the checkpoint {last} failed ([Errno 27] File too large)" in output.getvalue()  # the retry
    assert torch.load(last, weights_only=True)["step"] == 2
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"]  # no torn temporary file left behind
    run = only_run(tmp_path)
    assert run.info.status == "FAILED" and str(last) in run.data.tags["dssl.error"]

    outcome = invoke("bench", "--resume", run.info.run_id, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert outcome.exit_code == 0, outcome.output  # the MLflow run is not lost: it resumes from step 2
    assert numbers(RunResults.read(last.parent.parent / "results.json")) == pytest.approx(reference, abs=1e-6, rel=0)


def test_a_checkpoint_write_that_fails_once_is_retried_and_the_run_finishes(tmp_path, monkeypatch):
    from dssl.engine import checkpoint_io

    monkeypatch.setattr(checkpoint_io, "RETRY_WAITS_S", (0.0, 0.0))
    real_save, failures = torch.save, []

    def save_once_failing(obj, handle, *args, **kwargs):
        if not failures:
            failures.append(handle)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_once_failing)
    results = api.run(api.resolve(write_config(tmp_path)))
    assert failures and only_run(tmp_path).info.status == "FINISHED"
    assert torch.load(results.checkpoint, weights_only=True)["step"] == STEPS


# -- clear errors ------------------------------------------------------------------------------------------------


def test_unknown_run_id_is_a_usage_error(tmp_path):
    outcome = invoke("bench", "--resume", "0123456789abcdef", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert outcome.exit_code == 2
    assert "no run folder and no MLflow run with that id" in outcome.output


def test_run_without_checkpoint_and_finished_run_cannot_be_resumed(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with monkeypatch.context() as patch:
        fail_after(patch, failing_step=0)
        with pytest.raises(RunFailedError):
            api.run(api.resolve(write_config(tmp_path, checkpoint_every=0)))
    failed = only_run(tmp_path)
    outcome = invoke("bench", "--resume", failed.info.run_id, "--tracking-uri", uri)
    assert outcome.exit_code == 2 and "no checkpoint at" in outcome.output

    client(tmp_path).delete_run(failed.info.run_id)
    finished = api.run(api.resolve(write_config(tmp_path, optim={"steps": 1, "batch_size": 2})))
    outcome = invoke("bench", "--resume", finished.run.run_id, "--tracking-uri", uri)
    assert outcome.exit_code == 2 and "is FINISHED; nothing to resume" in outcome.output
    outcome = invoke("bench", "--resume", finished.run.output_dir)
    assert outcome.exit_code == 2 and "is FINISHED; nothing to resume" in outcome.output


def test_flags_that_change_the_run_are_refused_with_resume(tmp_path):
    outcome = invoke("bench", "--resume", "abc", "--steps", "3", "--set", "seed=1")
    assert outcome.exit_code == 2
    assert outcome.output.count("\n") == 1
    assert "drop --steps, --set" in outcome.output


# -- grids ---------------------------------------------------------------------------------------------------


def test_rerun_grid_resumes_an_interrupted_cell_in_its_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = {
        "device": "cpu",
        "preset": "cpu",
        "optim": {"steps": STEPS, "batch_size": 2, "warmup_steps": 1},
        "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
        "eval_dataset": {"name": "embedded", "options": {"size": 32, "num_train": 16, "num_val": 8}},
        "evaluator_options": {"kmeans_seg": {"seeds": [0], "n_init": 1}},
        "checkpoint_every": 2,
        "log_every": 1,
        "output_dir": str(tmp_path / "runs"),
    }
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "base": base,
                "set": ["objective.options.out_dim=64", "dataset.options.size=32", "dataset.options.num_train=5"],
                "objectives": ["dino"],
                "evaluators": ["kmeans_seg"],
                "seeds": [0],
            }
        )
    )
    args = ["grid", str(grid), "--tracking-uri", uri, "--experiment", "resume"]
    with monkeypatch.context() as patch:
        fail_after(patch, failing_step=3)  # the checkpoint after step 2 exists
        first = invoke(*args)
    assert first.exit_code == 1, first.output
    interrupted = [r for r in only_runs(tmp_path) if "dssl.grid.cell" in r.data.tags]
    assert [r.info.status for r in interrupted] == ["FAILED"]
    run_id = interrupted[0].info.run_id

    assert f"resumes run {run_id}" in invoke(*args, "--dry-run").output
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert f"resuming run {run_id}" in second.output
    runs = only_runs(tmp_path)
    cells = [r for r in runs if "dssl.grid.cell" in r.data.tags]
    assert [(r.info.run_id, r.info.status) for r in cells] == [(run_id, "FINISHED")]
    assert cells[0].data.tags["dssl.resumed_from_step"] == "2"
    newest_parent = next(r for r in runs if "dssl.grid.cell" not in r.data.tags)  # newest first
    assert cells[0].data.tags["mlflow.parentRunId"] == newest_parent.info.run_id
