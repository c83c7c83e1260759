"""Plain-line progress (output is not a terminal) and quiet consoles."""

from __future__ import annotations

import io

import pytest
from dssl.engine.progress import StageProgress, TrainingProgress
from rich.console import Console


def _console(*, quiet: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=False, quiet=quiet)


def test_training_progress_prints_every_n_steps_and_the_last(capsys: pytest.CaptureFixture[str]) -> None:
    with TrainingProgress(25, every=10, console=_console(quiet=False)) as bar:
        for step in range(1, 26):
            bar.update(step, {"loss": 1.0 / step}, images_per_second=10.0)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in lines] == ["10/25", "20/25", "25/25"]
    assert "loss" in lines[-1] and "img/s" in lines[-1]


def test_stage_progress_prints_one_line_per_finished_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with StageProgress("linear_seg", console=_console(quiet=False)) as progress:
        for done in range(1, 4):
            progress("train", done, 3)
        progress("eval", 1, 1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["linear_seg train", "linear_seg eval"]


def test_quiet_console_silences_both(capsys: pytest.CaptureFixture[str]) -> None:
    with TrainingProgress(3, every=1, console=_console(quiet=True)) as bar:
        for step in range(1, 4):
            bar.update(step, {"loss": 0.5}, images_per_second=None)
    with StageProgress("knn", console=_console(quiet=True)) as progress:
        progress("features/val", 2, 2)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
