"""``--init warmstart``: checkpoints that ship with the package, found by backbone or by name."""

from __future__ import annotations

from pathlib import Path

import dssl
import pytest
from dssl.backbones.checkpoint import load_init
from dssl.catalogue import Catalogue, WarmStart, load_catalogue
from dssl.errors import ConfigError
from dssl.runner import resolve_init


def _catalogue(file: str) -> Catalogue:
    base = load_catalogue().model_dump()
    base["warmstarts"] = {
        "tiny-dino": {"backbone": "vit_t16", "file": file, "summary": "test", "recipe": "a test"},
    }
    return Catalogue.model_validate(base)


def test_warmstart_is_found_by_backbone_or_name() -> None:
    catalogue = _catalogue("warmstarts/tiny.pt")
    assert catalogue.warmstart_for("warmstart", "vit_t16") == catalogue.warmstarts["tiny-dino"]
    assert catalogue.warmstart_for("warmstart:tiny-dino", "vit_t16") is catalogue.warmstarts["tiny-dino"]
    # No warm start for this backbone: `warmstart` means random init (the run's init report says so).
    assert catalogue.warmstart_for("warmstart", "vit_s16") is None
    with pytest.raises(ConfigError, match="unknown warm start 'tiny'; did you mean 'tiny-dino'"):
        catalogue.warmstart_for("warmstart:tiny", "vit_t16")
    with pytest.raises(ConfigError, match="trained for the vit_t16 backbone, not vit_s16"):
        catalogue.warmstart_for("warmstart:tiny-dino", "vit_s16")


def test_shipped_warmstarts_exist_and_load_into_their_backbone() -> None:
    from dssl.config import RunConfig
    from dssl.host import get_host
    from dssl.runner import build_backbone

    for name, warm in load_catalogue().warmstarts.items():
        assert warm.path().is_file(), f"{name}: {warm.path()} is missing"
        config = RunConfig.model_validate({"backbone": {"name": warm.backbone, "init": f"warmstart:{name}"}})
        backbone = build_backbone(config, get_host())
        report = load_init(backbone, resolve_init(config.backbone.init, warm.backbone))
        assert report.loaded > 0 and not report.missing, report.summary()


def test_warmstart_without_a_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    catalogue = _catalogue("warmstarts/not-there.pt")
    monkeypatch.setattr("dssl.catalogue.load_catalogue", lambda *a, **k: catalogue)
    with pytest.raises(ConfigError, match=r"warm start file .*not-there\.pt is missing"):
        resolve_init("warmstart", "vit_t16")
    assert resolve_init("warmstart", "vit_b16") == "random"


def test_warm_start_path_is_inside_the_package() -> None:
    warm = WarmStart(backbone="vit_t16", file="warmstarts/x.pt", summary="s", recipe="r")
    assert warm.path().parent.parent == Path(dssl.__file__).parent


def test_start_steps_say_how_far_a_start_was_trained(tmp_path: Path) -> None:
    import yaml
    from dssl.api import start_steps

    recipe = yaml.safe_load((Path(__file__).parents[2] / "benchmarks/cpu-track/warm-start.yaml").read_text())
    assert start_steps(backbone="vit_cpu8", init="warmstart") == recipe["optim"]["steps"] == 2000
    assert start_steps(backbone="vit_cpu8", init="warmstart:vit_cpu8-dino-plateau") == 2000
    assert start_steps(backbone="vit_cpu8", init="random") == 0
    assert start_steps(backbone="vit_t16", init="warmstart") == 0  # none for vit_t16: it starts at random
    assert start_steps(backbone="vit_cpu8", init=str(tmp_path / "weights.pt")) is None
    assert start_steps(backbone="vit_cpu8", init="warmstart:no-such-start") is None
    assert start_steps(backbone="vit_t16", init="warmstart:vit_cpu8-dino") is None  # made for another backbone
