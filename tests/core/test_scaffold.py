"""`dssl new-plugin` generates a package that installs, is discovered, and passes as generated; its conformance
test fails when the plugin does not load, registers nothing, or collides with another plugin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli
from dssl.errors import UsageError
from dssl.scaffold import KINDS, scaffold_plugin


def install(package: Path, site: Path) -> dict[str, str]:
    """``pip install`` the package into the folder ``site``; the environment that sees it (and nothing else new)."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(package)], check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def run_generated_tests(package: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        env=env,
        capture_output=True,
        text=True,
        cwd=package.parent,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An objective-only plugin ``dssl-my-method``, generated and installed into a folder of its own."""
    root = tmp_path_factory.mktemp("scaffold")
    result = CliRunner().invoke(cli, ["new-plugin", "my_method", "-o", str(root)])
    assert result.exit_code == 0, result.output
    package = root / "dssl-my-method"
    install(package, root / "site")
    return package, root / "site"


def broken_copy(installed: tuple[Path, Path], tmp_path: Path, edit) -> dict[str, str]:
    """A copy of the installed plugin whose installed ``plugin.py`` ``edit`` rewrote; the environment that sees it."""
    site = tmp_path / "site"
    shutil.copytree(installed[1], site)
    plugin = site / "dssl_my_method" / "plugin.py"
    plugin.write_text(edit(plugin.read_text()))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_invalid_names_kinds_and_existing_folders_are_refused(tmp_path):
    with pytest.raises(UsageError, match="invalid plugin name"):
        scaffold_plugin("Bad-Name", tmp_path)
    with pytest.raises(UsageError, match="--kind sampler: expected any of objective, augmentation"):
        scaffold_plugin("fine", tmp_path, kinds=["sampler"])
    scaffold_plugin("fine", tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        scaffold_plugin("fine", tmp_path)
    result = CliRunner().invoke(cli, ["new-plugin", "Bad-Name", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "invalid plugin name" in result.output
    result = CliRunner().invoke(cli, ["new-plugin", "other", "--kind", "sampler", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "'sampler' is not one of" in result.output


def test_every_kind_writes_its_module_options_registration_and_readme(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "every", *[f"--kind={k}" for k in KINDS], "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "dssl bench --objective every --backbone every --dataset every --augmentation every --eval every" in (
        result.output
    )
    package = tmp_path / "dssl-every" / "src" / "dssl_every"
    modules = {p.name for p in package.iterdir()}
    assert modules == {"__init__.py", "plugin.py", "config.py", *(f"{k}.py" for k in KINDS if k != "hook")}
    config = (package / "config.py").read_text()
    for kind in ("Objective", "Augmentation", "Evaluator", "Dataset", "Backbone"):
        assert f"class Every{kind}Options(" in config
    plugin = (package / "plugin.py").read_text()
    assert plugin.count("@hookimpl") == 6 and "def dssl_run_finished(" in plugin
    assert 'default_augmentation="every"' in plugin  # the objective uses the package's own augmentation
    readme = (tmp_path / "dssl-every" / "README.md").read_text()
    for section in ("Objective `every`", "Augmentation `every`", "Evaluator `every`", "Dataset `every`",
                    "Backbone `every`", "Lifecycle hook `dssl_run_finished`"):  # fmt: skip
        assert section in readme
    # One kind: only its files.
    scaffold_plugin("solo", tmp_path, kinds=["evaluator"])
    assert {p.name for p in (tmp_path / "dssl-solo" / "src" / "dssl_solo").iterdir()} == {
        "__init__.py", "plugin.py", "config.py", "evaluator.py"
    }  # fmt: skip


def test_generated_plugin_installs_is_listed_and_passes_its_tests(installed):
    package, site = installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run(
        [sys.executable, "-m", "dssl", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    records = {r["distribution"]: r for r in json.loads(listing.stdout)}
    assert records["dssl-my-method"]["status"] == "loaded", records["dssl-my-method"]
    assert [c["name"] for c in records["dssl-my-method"]["components"]] == ["my_method"]
    tests = run_generated_tests(package, env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_generated_tests_fail_when_the_plugin_does_not_import(installed, tmp_path):
    missing = "from __future__ import annotations\n\nimport dssl_my_method_missing_dependency  # noqa: F401\n"
    env = broken_copy(installed, tmp_path, lambda text: text.replace("from __future__ import annotations\n", missing))
    tests = run_generated_tests(installed[0], env)
    assert tests.returncode == 1, tests.stdout
    assert "2 failed" in tests.stdout and "skipped" not in tests.stdout
    assert "did not load: ModuleNotFoundError: No module named 'dssl_my_method_missing_dependency'" in tests.stdout


def test_generated_tests_fail_when_the_plugin_registers_nothing(installed, tmp_path):
    env = broken_copy(installed, tmp_path, lambda text: text.replace("@hookimpl\n", ""))  # a plain function
    tests = run_generated_tests(installed[0], env)
    assert tests.returncode == 1, tests.stdout
    assert "2 failed" in tests.stdout
    assert "plugin dssl-my-method registers no component and implements no lifecycle hook" in tests.stdout


def test_generated_tests_fail_when_a_name_collides(installed, tmp_path):
    # The core registers 'dino' first: the plugin's registration of that name is refused.
    env = broken_copy(installed, tmp_path, lambda text: text.replace('"my_method",', '"dino",', 1))
    tests = run_generated_tests(installed[0], env)
    assert tests.returncode == 1, tests.stdout
    assert "objective name 'dino' is registered twice: by dssl-bench and by dssl-my-method" in tests.stdout


def test_generated_tests_fail_when_another_plugin_collides_with_this_one(installed, tmp_path):
    # A second plugin that loads after this one and registers its name: this plugin keeps it, the other fails,
    # and this plugin's tests say so too (installing both together is broken either way).
    other = tmp_path / "other"
    scaffold_plugin("zz_other", other)
    plugin = other / "dssl-zz-other" / "src" / "dssl_zz_other" / "plugin.py"
    plugin.write_text(plugin.read_text().replace('"zz_other",', '"my_method",', 1))
    site = tmp_path / "site"
    shutil.copytree(installed[1], site)
    env = install(other / "dssl-zz-other", site)
    tests = run_generated_tests(installed[0], env)
    assert tests.returncode == 1, tests.stdout
    assert "plugin dssl-my-method registers a name that dssl-zz-other registers too" in tests.stdout
