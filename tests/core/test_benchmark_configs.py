"""The configurations shipped under ``benchmarks/`` resolve, so the commands the README documents work."""

from __future__ import annotations

from pathlib import Path

import pytest
from dssl.api import resolve
from dssl.grid.spec import load_grid

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_dino_cpu_dense_is_the_cpu_preset_plus_its_three_documented_changes() -> None:
    dense = resolve(BENCHMARKS / "dino-cpu-dense.yaml", objective="dino", backbone="vit_t16", preset="cpu")
    plain = resolve(objective="dino", backbone="vit_t16", preset="cpu")
    assert dense.optim.steps == 1000
    assert dense.objective.options["use_bn_in_head"] is True
    assert tuple(dense.augmentation.options["color_jitter"]) == (0.4, 0.4, 0.8, 0.5)
    assert dense.augmentation.options["color_jitter_p"] == 1.0
    # Everything else is the cpu preset's recipe.
    changed = {"steps"}
    assert {k: v for k, v in dense.optim.model_dump().items() if k not in changed} == {
        k: v for k, v in plain.optim.model_dump().items() if k not in changed
    }
    assert {k: v for k, v in dense.objective.options.items() if k != "use_bn_in_head"} == {
        k: v for k, v in plain.objective.options.items() if k != "use_bn_in_head"
    }
    assert dense.dataset == plain.dataset and dense.evaluators == plain.evaluators


@pytest.mark.parametrize("name", ["cpu-smoke.yaml", "gpu-vits16.yaml"])
def test_grid_specs_load(name: str) -> None:
    spec = load_grid(BENCHMARKS / name)
    assert spec.objectives and spec.backbones and spec.seeds
