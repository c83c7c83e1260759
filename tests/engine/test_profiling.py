"""`dssl bench --profile-steps`: the step phases are reported, non-negative and add up to the step time."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from dssl.api import resolve
from dssl.cli.main import cli
from dssl.engine.profiling import PHASES, StepProfiler
from dssl.errors import ConfigError
from dssl.host import get_host
from dssl.runner import profile_bench
from tiny_config import TINY_SETS

TINY = [*TINY_SETS, "optim.steps=4"]


def _config():
    return resolve(objective="dino", backbone="vit_t16", device="cpu", preset="cpu", sets=TINY)


def test_profile_reports_every_phase_and_they_sum_to_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = profile_bench(_config(), host=get_host(), steps=2)
    assert report.steps == 2
    assert list(report.phase_seconds) == list(PHASES)
    assert all(seconds >= 0 for seconds in report.phase_seconds.values())
    assert report.phase_seconds["forward"] > 0 and report.phase_seconds["backward"] > 0
    assert sum(report.phase_seconds.values()) == pytest.approx(report.total_seconds, rel=1e-6, abs=1e-9)
    rows = report.rows()
    assert [r[0] for r in rows] == [*PHASES, "total"]
    assert sum(r[2] for r in rows[:-1]) == pytest.approx(100.0, abs=1e-6)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_cli_prints_the_table_and_skips_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--objective", "dino", "--backbone", "vit_t16", "--device", "cpu", "--preset", "cpu"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, [*args, "--profile-steps", "2"])
    assert result.exit_code == 0, result.output
    for phase in (*PHASES, "total"):
        assert phase in result.output
    assert "miou" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_too_few_steps_is_a_config_error():

    with pytest.raises(ConfigError, match="profile-steps"):
        profile_bench(_config(), host=get_host(), steps=3)


def test_profiler_skips_warmup_and_stops():
    profiler = StepProfiler(torch.device("cpu"), steps=2, warmup=1)
    for _ in range(5):
        if profiler.finished:
            break
        profiler.begin_step()
        for phase in PHASES:
            profiler.mark(phase)
        profiler.end_step()
    assert profiler.finished and profiler.report().steps == 2
