"""benchmarks/warm_start.py records the commit a warm start was made at, and says ``+dirty`` when the code, the
registry or the run's own configuration file differ from it (a changed configuration alone changes the
checkpoint)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark_script


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "warm-start.yaml").write_text("optim: {lr: 0.002}\n")
    (tmp_path / "benchmarks" / "notes.md").write_text("notes\n")
    (tmp_path / "registry.yaml").write_text("presets: {}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tmp_path


def test_git_commit_is_dirty_when_the_run_configuration_changed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_benchmark_script("warm_start.py", "warm_start")
    monkeypatch.setattr(script, "ROOT", repo)
    config = repo / "benchmarks" / "warm-start.yaml"
    head = git(repo, "rev-parse", "HEAD")
    assert script.git_commit(config) == head
    # Files the run does not read leave the record clean.
    (repo / "benchmarks" / "notes.md").write_text("other notes\n")
    assert script.git_commit(config) == head
    config.write_text("optim: {lr: 0.008}\n")
    assert script.git_commit(config) == head + "+dirty"
    git(repo, "checkout", "-q", "--", "benchmarks/warm-start.yaml")
    (repo / "registry.yaml").write_text("presets: {cpu: {}}\n")
    assert script.git_commit(config) == head + "+dirty"


def test_git_commit_outside_a_repository_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_benchmark_script("warm_start.py", "warm_start")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert script.git_commit(tmp_path / "warm-start.yaml") == "unknown"
