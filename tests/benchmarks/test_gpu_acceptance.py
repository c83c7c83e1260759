"""The GPU acceptance script (benchmarks/gpu/acceptance.py) runs end to end on the CPU, so that it cannot rot, and
its failure handling (collected failures, time budget, exit code, RESULTS.md section) behaves as documented."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.benchmark_scripts import load_benchmark_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "acceptance.py"


def load_script() -> ModuleType:
    return load_benchmark_script("gpu/acceptance.py", "gpu_acceptance")


def test_tiny_cpu_run_covers_every_method_torchrun_and_every_dense_evaluator(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--no-append", "--threads", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert out.startswith("device: CPU")
    assert "ACCEPTANCE OK" in out
    assert not results.exists()  # --no-append
    script = load_script()
    rows = [line for line in out.splitlines() if line.startswith("│")]
    for label, _, _ in script.METHODS:
        assert any(f"│ {label} " in row and "│ train " in row and "│ ok " in row for row in rows), label
    torchrun = "\n".join(line for line in out.splitlines() if "torchrun" in line or "backend" in line)
    assert "dino 1-process" in torchrun and "gloo" in out
    for name in script.dense_evaluators():
        assert any(f"│ {name} " in row and "│ ok " in row for row in rows), name
    assert "FAILED" not in out


def test_failures_are_collected_and_the_budget_stops_a_part() -> None:
    script = load_script()
    budget = script.Budget(total_s=60.0)

    def raises(outcome: object) -> None:
        raise ValueError("broken evaluator")

    def sleeps(outcome: object) -> None:
        time.sleep(5)

    def works(outcome: object) -> None:
        outcome.figures = {"images/s": "1.0"}  # type: ignore[attr-defined]

    failed = script.run_part(script.Outcome("eval", "x"), budget, None, raises)
    assert failed.status == "FAILED" and "ValueError: broken evaluator" in failed.detail
    started = time.perf_counter()
    over = script.run_part(script.Outcome("compile", "y"), budget, 0.2, sleeps)
    assert over.status == "FAILED" and "over its budget" in over.detail
    assert time.perf_counter() - started < 4  # interrupted at its cap, not after the sleep
    ok = script.run_part(script.Outcome("train", "z"), budget, None, works)
    assert ok.status == "ok" and ok.figures == {"images/s": "1.0"}
    spent = script.Budget(total_s=1.0, clock=itertools.chain([0.0], itertools.repeat(10.0)).__next__)
    skipped = script.run_part(script.Outcome("compile", "w"), spent, None, works)
    assert skipped.status == "skipped" and skipped.failed and not skipped.figures


def test_no_budget_means_no_deadline() -> None:
    script = load_script()
    assert script.Budget(total_s=None).limit(0.1) == float("inf")
    assert script.Budget(total_s=100.0).limit(30.0) == pytest.approx(30.0, abs=0.5)


def test_results_section_names_the_device_and_lists_every_part(tmp_path: Path) -> None:
    script = load_script()
    outcomes = [
        script.Outcome("train", "dino", figures={"images/s": "512.0", "engine/bare": "1.010"}),
        script.Outcome("eval", "linear_seg", status="FAILED", detail="RuntimeError: boom | pipe"),
    ]
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n")
    script.append_results(path, outcomes, script.settings_for("cpu", tiny=True), 12.0)
    text = path.read_text()
    assert text.startswith("# Benchmark results\n")
    assert "## GPU acceptance run on CPU: " in text
    assert "1 of 2 parts ok" in text
    assert "| train | dino | ok |" in text and "512.0" in text and "1.010" in text
    assert "| eval | linear_seg | FAILED |" in text and "boom / pipe" in text  # a '|' cannot break the table


def test_crop_sizes_are_rounded_to_the_patch_size() -> None:
    script = load_script()
    assert [script.round_to_patch(size, 16) for size in (518, 98, 224, 96, 5)] == [512, 96, 224, 96, 16]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc (Linux)")
def test_an_interrupted_torchrun_leaves_no_worker_behind(tmp_path: Path) -> None:
    script = load_script()
    pid_file = tmp_path / "worker.pid"
    launcher = (
        "import subprocess, sys\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(worker.pid))\n"
        "worker.wait()\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        script.run_process_group([sys.executable, "-c", launcher], cwd=str(tmp_path), timeout=5)
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = Path(f"/proc/{worker}/status")
        if not status.exists() or "\nState:\tZ" in status.read_text():
            break  # gone, or a zombie waiting for init: killed either way
        time.sleep(0.1)
    else:
        pytest.fail(f"the launcher's child {worker} still runs")
