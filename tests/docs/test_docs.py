"""The documentation site builds with no warning, and its plugin guide's examples run.

The guide's code is ``docs/examples/dssl-guide``: exactly what ``dssl new-plugin guide --kind ...`` writes, one
component of each kind and a lifecycle hook, written against the public plugin API only (``test_public_api``). It is
installed here into a temporary environment, passes its own conformance tests, and runs in ``dssl bench`` and
``dssl grid``.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dssl.scaffold import KINDS, scaffold_plugin

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDE = DOCS / "examples" / "dssl-guide"
#: Small enough for seconds on a CPU; the guide's components throughout.
GUIDE_RUN = [
    "--objective", "guide", "--backbone", "guide", "--dataset", "guide", "--augmentation", "guide", "--eval", "guide",
    "--steps", "3", "--batch-size", "4", "--set", "dataset.options.num_train=16", "--set", "dataset.options.num_val=8",
    "--set", "log_every=1", "--set", "optim.warmup_steps=1",
]  # fmt: skip


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(DOCS / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    pages = {p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("index.html")}
    assert {"plugins/objective", "plugins/augmentation", "plugins/evaluator", "plugins/dataset", "plugins/backbone",
            "plugins/hooks", "plugins/reference", "cli", "configuration", "protocols", "concepts"} <= pages  # fmt: skip
    objective = (tmp_path / "plugins" / "objective" / "index.html").read_text()
    assert "GuideObjective" in objective and "patch_correspondence" in objective  # the example's code is on its page
    reference = (tmp_path / "plugins" / "reference" / "index.html").read_text()
    assert "check_plugin" in reference and ":class:" not in reference


def test_the_guide_package_is_what_the_scaffold_writes(tmp_path):
    fresh = scaffold_plugin("guide", tmp_path, kinds=KINDS)
    written = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    kept = sorted(
        p.relative_to(GUIDE)
        for p in GUIDE.rglob("*")
        if p.is_file() and not {"__pycache__", "build"} & set(p.parts) and ".egg-info" not in str(p)
    )
    assert written == kept
    _, mismatch, errors = filecmp.cmpfiles(fresh, GUIDE, [str(p) for p in written], shallow=False)
    assert not mismatch and not errors, f"regenerate docs/examples/dssl-guide: {mismatch + errors} differ"


def test_the_guide_lists_every_registry_metadata_key():
    from dssl.plugin import COMMON_METADATA, KIND_METADATA

    guide = (DOCS / "pages" / "plugins" / "index.md").read_text()
    rows = set(re.findall(r"^\| (any|[a-z]+) \| `(\w+)` \|", guide, flags=re.MULTILINE))
    expected = {("any", key) for key in COMMON_METADATA} | {
        (k, key) for k, keys in KIND_METADATA.items() for key in keys
    }
    assert rows == expected


@pytest.fixture(scope="module")
def guide_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The guide package installed (``pip install``) into a folder of its own: an environment that has it."""
    import shutil

    root = tmp_path_factory.mktemp("guide")
    source = root / "dssl-guide"
    shutil.copytree(GUIDE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    subprocess.run([*pip, str(root / "site"), str(source)], check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "site"), os.environ.get("PYTHONPATH", "")])}


def _dssl(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dssl", *args], env=env, capture_output=True, text=True, cwd=cwd)


def test_the_installed_guide_plugin_is_listed_and_passes_its_conformance_tests(guide_env, tmp_path):
    listing = json.loads(_dssl(guide_env, "plugins", "--json", cwd=tmp_path).stdout)
    guide = next(r for r in listing if r["distribution"] == "dssl-guide")
    assert guide["status"] == "loaded", guide["error"]
    assert {(c["kind"], c["name"]) for c in guide["components"]} == {
        (kind, "guide") for kind in ("objective", "augmentation", "evaluator", "dataset", "backbone")
    }
    assert guide["hooks"] == ["dssl_run_finished"] and guide["api_range"] == ">=1.1,<2"
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(GUIDE / "tests")],
        env=guide_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout


def test_bench_trains_and_evaluates_with_every_guide_component_and_calls_its_hook(guide_env, tmp_path):
    log = tmp_path / "runs.jsonl"
    env = guide_env | {"DSSL_GUIDE_RUNS_LOG": str(log)}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = _dssl(env, "bench", *GUIDE_RUN, "--tracking-uri", uri, "--output-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    (results_file,) = (tmp_path / "runs").rglob("results.json")
    results = json.loads(results_file.read_text())
    (evaluation,) = results["evaluations"]
    assert (evaluation["protocol"], evaluation["protocol_version"], evaluation["dataset"]) == ("guide", 1, "guide")
    assert 0.0 <= evaluation["metrics"]["miou"]["value"] <= 100.0
    assert set(results["train"]) >= {"loss", "dense", "global", "overlap"}
    from dssl.api import leaderboard

    (row,) = leaderboard(tracking_uri=uri, metric="guide/miou")  # the Python API reads the run as dssl leaderboard
    assert (row.objective, row.backbone, row.protocol, row.n_seeds) == ("guide", "guide", "guide@1", 1)
    assert row.mean == evaluation["metrics"]["miou"]["value"]
    (line,) = log.read_text().splitlines()
    assert json.loads(line) == {
        "run_id": results["run"]["run_id"],
        "status": "FINISHED",
        "metrics": {"guide/miou": evaluation["metrics"]["miou"]["value"],
                    "guide/pixel_accuracy": evaluation["metrics"]["pixel_accuracy"]["value"]},
    }  # fmt: skip


def test_grid_compares_the_guide_objective_with_dino_on_the_guide_components(guide_env, tmp_path):
    grid = tmp_path / "guide.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "name": "guide",
                "base": {"optim": {"steps": 2, "batch_size": 4, "warmup_steps": 1}, "log_every": 1},
                "set": ["dataset.options.num_train=16", "dataset.options.num_val=8"],
                "objectives": ["guide", {"name": "dino", "set": ["objective.options.out_dim=64"]}],
                "backbones": ["guide"],
                "datasets": ["guide"],
                "evaluators": ["guide"],
                "seeds": [0],
            }
        )
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = _dssl(guide_env, "grid", str(grid), "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "guide — guide@1 on guide" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "1/1" in line]
    assert len(rows) == 2 and {row.split()[1] for row in rows} == {"guide", "dino"}
