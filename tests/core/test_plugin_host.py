"""Plugin discovery, isolation, collisions, strictness, disabling, API ranges and hook validation."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from dssl import PLUGIN_API_VERSION, hookimpl
from dssl.errors import PluginError, UnknownComponentError
from dssl.host import PluginHost, PluginSource


@dataclass(frozen=True)
class ObjectSource(PluginSource):
    """A plugin source whose plugin object is given directly (no entry point needed)."""

    obj: Any = None

    def load(self) -> Any:
        if isinstance(self.obj, BaseException):
            raise self.obj
        return self.obj


def fake_module(**attributes: Any) -> ModuleType:
    """A plugin module built in the test (plugins are modules; pluggy needs hashable objects)."""
    module = ModuleType("dssl_fake_plugin")
    for name, value in attributes.items():
        setattr(module, name, value)
    return module


def objective_plugin(*names: str, api: str | None = None) -> ModuleType:
    @hookimpl
    def dssl_register_objectives(registry):
        for name in names:
            registry.add(name, "dssl_fake.objective:Objective", summary=f"fake objective {name}")

    plugin = fake_module(dssl_register_objectives=dssl_register_objectives)
    if api is not None:
        plugin.dssl_plugin_api = api
    return plugin


def source(dist: str, obj: Any, name: str = "main") -> ObjectSource:
    return ObjectSource(distribution=dist, version="1.0", name=name, value=f"{dist}.plugin", obj=obj)


def test_real_entry_points_discover_builtin_and_example_plugin():
    host = PluginHost()
    by_dist = {r.distribution: r for r in host.records}
    assert by_dist["dssl-bench"].status == "loaded"
    assert by_dist["dssl-example"].status == "loaded", by_dist["dssl-example"].error
    assert host.get("objective", "example_cls_mse").distribution == "dssl-example"
    assert host.get("objective", "dino").distribution == "dssl-bench"
    for kind in ("backbone", "objective", "augmentation", "evaluator", "dataset"):
        assert host.registry.names(kind), f"no built-in {kind}"


def test_broken_plugin_is_isolated_and_reported():
    host = PluginHost()
    broken = next(r for r in host.records if r.distribution == "dssl-broken")
    assert broken.status == "failed"
    assert "ModuleNotFoundError" in broken.error
    # The rest of dssl keeps working.
    assert host.get("objective", "dino")
    # Asking for the component the broken plugin provides is an error that names the failure.
    with pytest.raises(PluginError, match=r"dssl-broken.*failed to load"):
        host.get("objective", "broken_objective")


@pytest.mark.parametrize(("kind", "name"), [("evaluator", "broken_eval"), ("dataset", "broken_data")])
def test_every_component_of_a_plugin_that_failed_to_import_names_the_plugin_and_its_error(kind, name):
    host = PluginHost()
    with pytest.raises(PluginError) as raised:
        host.get(kind, name)
    message = str(raised.value)
    assert f"{kind} '{name}' is provided by plugin dssl-broken, which failed to load" in message
    assert "ModuleNotFoundError: No module named 'dssl_broken_missing_dependency'" in message
    assert "did you mean" not in message


def test_components_are_read_from_the_source_of_a_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "dssl_half_installed.py").write_text(
        "import dssl\nimport no_such_dependency_of_this_plugin\n\n\n"
        "@dssl.hookimpl\ndef dssl_register_evaluators(registry):\n"
        "    registry.add('depth_probe', 'x.y:Z', summary='s')\n"
        "    for name in computed_names():\n        registry.add(name, 'x.y:Z', summary='s')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from dssl.host import declared_components

    assert declared_components("dssl_half_installed") == {("evaluator", "depth_probe")}
    assert declared_components("no_such_module_anywhere") == set()
    host = PluginHost(
        sources=[PluginSource(distribution="dssl-half", version="1.0", name="half", value="dssl_half_installed")]
    )
    with pytest.raises(PluginError, match=r"evaluator 'depth_probe' is provided by plugin dssl-half.*no_such_dep"):
        host.get("evaluator", "depth_probe")
    # A name the plugin does not declare is simply unknown; the failed plugin is still listed.
    with pytest.raises(UnknownComponentError, match=r"unknown evaluator 'other'.*failed to load: dssl-half"):
        host.get("evaluator", "other")


def test_a_plugin_whose_components_cannot_be_read_may_provide_any_unknown_name():
    host = PluginHost(sources=[source("dssl-opaque", ImportError("no module named foo"))])
    with pytest.raises(UnknownComponentError, match=r"which may provide it: dssl-opaque \(ImportError: no module"):
        host.get("dataset", "anything")


def test_failure_in_registration_removes_partial_entries():
    @hookimpl
    def dssl_register_objectives(registry):
        registry.add("half", "x.y:Z", summary="registered before the crash")
        raise RuntimeError("boom")

    host = PluginHost(sources=[source("dssl-crash", fake_module(dssl_register_objectives=dssl_register_objectives))])
    assert host.records[0].status == "failed"
    assert "RuntimeError: boom" in host.records[0].error
    assert ("objective", "half") not in host.registry
    # What it registered before the crash is still attributed to it.
    with pytest.raises(PluginError, match=r"objective 'half' is provided by plugin dssl-crash.*RuntimeError: boom"):
        host.get("objective", "half")


def test_name_collision_names_both_distributions():
    host = PluginHost(
        sources=[source("dssl-one", objective_plugin("same")), source("dssl-two", objective_plugin("same"))]
    )
    assert host.get("objective", "same").distribution == "dssl-one"
    failure = host.records[1]
    assert failure.status == "failed"
    assert "dssl-one" in failure.error and "dssl-two" in failure.error
    with pytest.raises(PluginError, match="dssl-one"):
        PluginHost(
            strict=True,
            sources=[
                source("dssl-one", objective_plugin("same")),
                source("dssl-two", objective_plugin("same")),
            ],
        )


def test_unknown_name_suggests_close_matches():
    host = PluginHost(sources=[source("dssl-x", objective_plugin("cotap", "paka"))])
    with pytest.raises(UnknownComponentError, match=r"unknown objective 'cotpa'; did you mean 'cotap'\?"):
        host.get("objective", "cotpa")
    with pytest.raises(UnknownComponentError, match="available: cotap, paka"):
        host.get("objective", "zzz")


def test_strict_mode_raises_on_import_failure():
    sources = [
        source("dssl-ok", objective_plugin("fine")),
        source("dssl-bad", ImportError("no module named foo")),
    ]
    lenient = PluginHost(sources=sources)
    assert [r.status for r in lenient.records] == ["loaded", "failed"]
    with pytest.raises(PluginError, match=r"dssl-bad.*failed to load.*no module named foo"):
        PluginHost(strict=True, sources=sources)


def test_disabling_by_distribution_name_flag_and_env(monkeypatch):
    sources = [source("dssl-a", objective_plugin("alpha")), source("dssl-b", objective_plugin("beta"))]
    host = PluginHost(disabled=["DSSL-A"], sources=sources)
    assert host.records[0].status == "disabled"
    with pytest.raises(UnknownComponentError, match="disabled"):
        host.get("objective", "alpha")
    assert host.get("objective", "beta")
    monkeypatch.setenv("DSSL_DISABLE_PLUGINS", "dssl-b, other")
    host = PluginHost(sources=sources)
    assert [r.status for r in host.records] == ["loaded", "disabled"]


def test_api_version_mismatch_is_reported_like_an_import_failure():
    host = PluginHost(sources=[source("dssl-future", objective_plugin("future", api=">=2,<3"))])
    record = host.records[0]
    assert record.status == "failed"
    assert "plugin API >=2,<3" in record.error and f"provides API {PLUGIN_API_VERSION}" in record.error
    ok = PluginHost(sources=[source("dssl-now", objective_plugin("now", api=">=1.0,<2"))])
    assert ok.records[0].status == "loaded" and ok.records[0].api_range == ">=1.0,<2"


def test_hooks_that_do_not_match_the_specification_are_rejected():
    @hookimpl
    def dssl_register_objectives(registry, unexpected_argument):
        pass

    @hookimpl
    def dssl_register_objectivs(registry):  # a typo: no such hook
        pass

    host = PluginHost(
        sources=[
            source("dssl-badargs", fake_module(dssl_register_objectives=dssl_register_objectives)),
            source("dssl-typo", fake_module(dssl_register_objectivs=dssl_register_objectivs)),
        ]
    )
    assert [r.status for r in host.records] == ["failed", "failed"]
    assert "unexpected_argument" in host.records[0].error
    assert "unknown hook(s) dssl_register_objectivs" in host.records[1].error


def test_invalid_entries_are_rejected_with_the_reason():
    @hookimpl
    def dssl_register_objectives(registry):
        registry.add("Bad Name", "x.y:Z", summary="s")

    host = PluginHost(sources=[source("dssl-badname", fake_module(dssl_register_objectives=dssl_register_objectives))])
    assert "invalid objective name 'Bad Name'" in host.records[0].error


def test_lifecycle_hooks_accept_a_subset_of_arguments():
    seen: list[Any] = []

    @hookimpl
    def dssl_run_finished(status):  # opts into one argument only
        seen.append(status)

    host = PluginHost(sources=[source("dssl-tool", fake_module(dssl_run_finished=dssl_run_finished))])
    host.hook.dssl_run_finished(run=None, status="FINISHED", results=None)
    assert seen == ["FINISHED"]


def test_entries_are_lazy_until_loaded():
    host = PluginHost(sources=[source("dssl-lazy", objective_plugin("lazy"))])
    entry = host.get("objective", "lazy")
    with pytest.raises(PluginError, match=r"cannot import dssl_fake.objective:Objective"):
        entry.load()
