"""``--dry-run`` validates every name and option it resolves, with the very exit-2 error a real run gives."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from dssl.cli.main import cli

BAD_INPUT = [
    (["--backbone", "vit_nonexistent"], "unknown ViT backbone 'vit_nonexistent'"),
    (["--backbone", "resnet_nonexistent"], "unknown backbone 'resnet_nonexistent'"),
    (["--dataset", "no_such_data"], "unknown dataset 'no_such_data'"),
    (["--eval-dataset", "no_such_data"], "unknown dataset 'no_such_data'"),
    (["--set", "dataset.options.bogus=1"], "unknown key 'dataset.options.bogus'"),
    (["--set", "backbone.options.bogus=1"], "unknown key 'backbone.options.bogus'"),
    (["--eval", "no_such_evaluator"], "unknown evaluator 'no_such_evaluator'"),
    (["--eval", "kmeans_seg", "--set", "evaluator_options.kmeans_seg.bogus=1"], "evaluator_options.kmeans_seg.bogus"),
    (["--eval", "kmeans_seg", "--set", "evaluator_options.kmeans_seg.n_init=0"], "evaluator_options.kmeans_seg.n_init"),
]


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bench_dry_run_refuses_bad_names_and_options_with_exit_2(args, message):
    result = _run("bench", *args, "--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT[:2] + BAD_INPUT[-2:], ids=[" ".join(a) for a, _ in BAD_INPUT[:2] + BAD_INPUT[-2:]]
)
def test_eval_dry_run_refuses_bad_names_and_options_with_exit_2(args, message):
    result = _run("eval", "--init", "random", *args, "--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_real_run_gives_the_dry_run_error(tmp_path):
    dry = _run("bench", "--backbone", "vit_nonexistent", "--dry-run")
    real = _run("bench", "--backbone", "vit_nonexistent", "--no-tracking", "--output-dir", str(tmp_path))
    assert dry.exit_code == real.exit_code == 2
    assert dry.output == real.output
    assert not any(tmp_path.iterdir())  # nothing was built or written


def test_a_timm_vit_name_resolves_in_a_dry_run():
    result = _run("bench", "--backbone", "vit_small_patch16_224", "--dry-run")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["backbone"]["name"] == "vit_small_patch16_224"


def test_grid_dry_run_refuses_an_unknown_backbone(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {"objectives": ["dino"], "backbones": ["vit_nonexistent"], "datasets": ["embedded"], "evaluators": ["knn"]}
        )
    )
    result = _run("grid", str(grid), "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path}/none.db")
    assert result.exit_code == 2, result.output
    assert "unknown ViT backbone 'vit_nonexistent'" in result.output
