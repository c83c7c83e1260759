"""The plugin API's contracts that a plugin author meets without reading dssl's code: documented registry metadata
(anything else is refused), an optional API range that the listing shows either way, presets that follow the
augmentation a plugin brings."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from dssl import hookimpl
from dssl.cli.plugins_cmd import print_plugins
from dssl.config import resolve_config
from dssl.errors import ConfigError
from dssl.host import PluginHost, PluginSource, discover_sources
from pydantic import BaseModel, ConfigDict
from rich.console import Console


@dataclass(frozen=True)
class ObjectSource(PluginSource):
    obj: Any = None

    def load(self) -> Any:
        return self.obj


def plugin_module(api: str | None = None, **hooks: Any) -> ModuleType:
    module = ModuleType("dssl_authoring_plugin")
    for name, hook in hooks.items():
        setattr(module, name, hook)
    if api is not None:
        module.dssl_plugin_api = api
    return module


class SquareViewsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = 32


def test_unknown_registry_metadata_is_refused_with_the_accepted_keys():
    @hookimpl
    def dssl_register_evaluators(registry):
        registry.add("probe", "x.y:Z", summary="a probe", protocl="probe")

    host = PluginHost(sources=[ObjectSource("dssl-typo", "1.0", "typo", "m", plugin_module(
        dssl_register_evaluators=dssl_register_evaluators))])  # fmt: skip
    (record,) = host.records
    assert record.status == "failed"
    assert "evaluator 'probe' has unknown registry metadata 'protocl'; did you mean 'protocol'?" in record.error
    assert "accepted for a evaluator: code, diagnostic, protocol, requires_module, test_options" in record.error


def test_the_listing_shows_the_declared_api_range_or_that_there_is_none():
    @hookimpl
    def dssl_register_objectives(registry):
        registry.add("free", "x.y:Z", summary="no range declared")

    @hookimpl
    def dssl_run_finished(run, status):
        pass

    sources = [
        ObjectSource("dssl-free", "1.0", "free", "m", plugin_module(dssl_register_objectives=dssl_register_objectives)),
        ObjectSource(
            "dssl-hooked", "2.0", "hooked", "m", plugin_module(">=1.1,<2", dssl_run_finished=dssl_run_finished)
        ),
    ]
    host = PluginHost(sources=sources)
    console = Console(width=80, record=True)
    print_plugins(host.records, console)
    text = console.export_text()
    assert "dssl-free 1.0  plugin API range not declared" in text
    assert "dssl-hooked 2.0  plugin API >=1.1,<2" in text
    assert (
        "hook  dssl_run_finished" in " ".join(text.split("  hook")[1:2]).join(["  hook", ""])
        or "dssl_run_finished" in text
    )
    assert host.records[1].hooks == ["dssl_run_finished"]


def test_a_preset_multicrop_setting_reaches_only_augmentations_that_have_it():
    @hookimpl
    def dssl_register_augmentations(registry):
        registry.add("square", "x.y:Z", summary="square views", options=SquareViewsOptions)

    plugin = ObjectSource("dssl-square", "1.0", "square", "m", plugin_module(
        dssl_register_augmentations=dssl_register_augmentations))  # fmt: skip
    host = PluginHost(sources=[*discover_sources(), plugin])
    cli = {"augmentation.name": "square", "preset": "cpu"}
    config = resolve_config(cli=cli, host=host)
    assert config.augmentation.options == {"size": 32}  # the cpu preset's global_size/local_size/n_local left out
    multicrop = resolve_config(cli={"preset": "cpu"}, host=host)
    assert multicrop.augmentation.options["global_size"] == 64  # the preset still reaches multi-crop
    with pytest.raises(ConfigError, match=r"unknown key 'augmentation\.options\.global_size'"):
        resolve_config(cli=cli, sets=["augmentation.options.global_size=64"], host=host)  # the user's own key fails
