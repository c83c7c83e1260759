"""The command line: exit codes, one-line errors without tracebacks, listing, dry runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from dssl.cli.main import cli

HEAVY = ("torch", "timm", "mlflow", "sklearn")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["bench", "--help"]])
def test_listing_commands_import_no_heavy_module(args):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from dssl.cli.main import cli\n"
        f"result = CliRunner().invoke(cli, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`dssl {' '.join(args)}` imported {out.stdout.strip()}"


def test_version():
    import dssl

    result = invoke("--version")
    assert result.exit_code == 0 and dssl.__version__ in result.output


def test_plugins_table_and_json():
    result = invoke("plugins")
    assert result.exit_code == 0
    for text in ("dssl-bench", "dssl-example", "example_cls_mse", "dssl-broken", "ModuleNotFoundError"):
        assert text in result.output
    payload = json.loads(invoke("plugins", "--json").output)
    statuses = {p["distribution"]: p["status"] for p in payload}
    assert statuses["dssl-bench"] == "loaded" and statuses["dssl-broken"] == "failed"
    dino = next(c for p in payload for c in p["components"] if c["name"] == "dino")
    assert dino["kind"] == "objective" and dino["paper"]


def test_plugins_listing_fits_80_columns_one_line_per_component_and_wide_shows_everything():
    from dssl.host import get_host

    names = [e.name for e in get_host().registry]
    longest = max(get_host().registry, key=lambda e: len(e.summary))
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["plugins"])
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in names:  # every component on a line of its own
        assert sum(f" {name} " in f" {line} " for line in lines) >= 1
    assert longest.summary not in narrow.output and "…" in narrow.output  # cut, and marked as cut
    assert "dssl-broken 0.0.1" in narrow.output and "ModuleNotFoundError" in narrow.output  # errors are never cut
    wide = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["plugins", "--wide"])
    assert max(len(line) for line in wide.output.splitlines()) <= 80
    words = " ".join(line[35:].strip() for line in wide.output.splitlines())
    assert " ".join(longest.summary.split()) in " ".join(words.split())  # whole, wrapped
    assert "would provide dataset broken_data, evaluator broken_eval, objective broken_objective" in " ".join(
        wide.output.split()
    )


def test_strict_plugins_fails_with_exit_2_and_names_the_plugin():
    result = CliRunner().invoke(cli, ["--strict-plugins", "plugins"])
    assert result.exit_code == 2
    assert "dssl-broken" in result.output and "Traceback" not in result.output


def test_disable_plugin_flag():
    payload = json.loads(invoke("--disable-plugin", "dssl-example", "plugins", "--json").output)
    assert {p["distribution"]: p["status"] for p in payload}["dssl-example"] == "disabled"


def test_dry_run_prints_the_resolved_config():
    result = invoke("bench", "--objective", "dino", "--steps", "12", "--set", "optim.lr=0.001", "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.output)
    assert resolved["optim"]["steps"] == 12 and resolved["optim"]["lr"] == 0.001
    assert resolved["augmentation"]["name"] == "multicrop"
    assert resolved["objective"]["options"]["student_temp"] == 0.1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "dnio"], "did you mean 'dino'"),
        (["--set", "optim.lrr=1"], "unknown key 'optim.lrr'"),
        (["--set", "optim.steps=many"], "optim.steps: Input should be a valid integer"),
        (["--steps", "0"], "optim.steps: Input should be greater than 0"),
        (["--config", "/no/such/file.yaml"], "not found"),
        (["--set", "oops"], "expected key.path=value"),
        (["--eval", "hummingbirb"], "unknown evaluator 'hummingbirb'"),
        (["--objective", "broken_objective"], "dssl-broken, which failed to load"),
        (["--eval", "broken_eval"], "evaluator 'broken_eval' is provided by plugin dssl-broken, which failed"),
        (["--dataset", "broken_data"], "dataset 'broken_data' is provided by plugin dssl-broken, which failed"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = CliRunner().invoke(cli, ["bench", *args, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_debug_shows_the_exception():
    from dssl.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError):
        CliRunner().invoke(cli, ["--debug", "bench", "--objective", "dnio", "--dry-run"], catch_exceptions=False)


def test_malformed_yaml_config_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    result = CliRunner().invoke(cli, ["bench", "--config", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_leaderboard_reference_rows_are_marked_and_filtered(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/none.db")
    rows = json.loads(invoke("leaderboard", "--reference", "--format", "json", "--metric", "linear_seg/miou").output)
    assert rows and all(r["reference"] and r["source"] for r in rows)
    assert {r["metric"] for r in rows} == {"linear_seg/miou"}
    short = json.loads(invoke("leaderboard", "--reference", "--format", "json", "--metric", "miou").output)
    assert {r["metric"] for r in short} >= {"linear_seg/miou", "hummingbird/miou"}  # bare names match any evaluator
    empty = invoke("leaderboard")
    assert empty.exit_code == 0 and "no finished runs" in empty.output
