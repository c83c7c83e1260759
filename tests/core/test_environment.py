"""The README's set-up installs the core, the first-party plugins and the test tools, and nothing that fails to
load; the example and broken test plugins reach only the tests (conftest.py provides them without installing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from conftest import EXAMPLE_PLUGINS, TEST_PLUGINS_ENV, tomllib

ROOT = Path(__file__).resolve().parents[2]


def setup_distributions() -> dict[str, Path]:
    """Distribution name -> folder, of every package the README's set-up (requirements-dev.txt) installs from here."""
    found = {}
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-e "):
            folder = ROOT / line.removeprefix("-e ").split("[", 1)[0].strip()
            found[tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"]] = folder
    return found


def test_the_setup_installs_the_core_and_the_first_party_plugins_and_no_test_plugin():
    folders = setup_distributions()
    assert folders["dssl-bench"] == ROOT
    assert {p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml")} == {
        f.name for name, f in folders.items() if name != "dssl-bench"
    }
    assert not [f for f in folders.values() if EXAMPLE_PLUGINS in f.parents or f.is_relative_to(ROOT / "tests")]


def test_the_test_plugins_are_provided_without_installation():
    provided = Path(os.environ[TEST_PLUGINS_ENV])
    for name in ("dssl-example", "dssl-broken"):
        distribution = metadata.distribution(name)
        assert Path(str(distribution.locate_file(""))) == provided, f"{name} comes from {distribution.locate_file('')}"
    from dssl.host import get_host

    statuses = {r.distribution: r.status for r in get_host().records}
    assert statuses["dssl-example"] == "loaded" and statuses["dssl-broken"] == "failed"


def test_no_plugin_the_setup_installs_fails_to_load():
    # A fresh process without the test plugins' folders: what a user's `dssl plugins` lists after the set-up.
    provided = {
        os.environ[TEST_PLUGINS_ENV],
        *(str(p.parent / "src") for p in EXAMPLE_PLUGINS.glob("*/pyproject.toml")),
    }
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in provided]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    listing = subprocess.run(
        [sys.executable, "-m", "dssl", "plugins", "--json"], env=env, capture_output=True, text=True, check=True
    )
    records = {r["distribution"]: r for r in json.loads(listing.stdout)}
    for name in setup_distributions():
        assert records[name]["status"] == "loaded", records[name]
