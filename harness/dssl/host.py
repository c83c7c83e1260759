"""The plugin host: discovers ``dssl`` entry points, isolates broken plugins, builds the registry.

Each entry point is loaded on its own, inside its own try/except. A plugin that fails to import,
whose hooks do not match the specifications, whose declared API range excludes this dssl, or whose
registration raises is recorded as failed and skipped; its failure becomes an error only when the
user asks for a component it provides, or under ``strict=True`` (``--strict-plugins``).

What a failed plugin provides is known without running it: the components it registered before its
registration raised, and the literal names its ``dssl_register_*`` hooks pass to ``registry.add`` in its
source (read, never executed, when its import fails). Asking for any of them names the plugin and its error.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from dssl import ENTRY_POINT_GROUP, PLUGIN_API_VERSION, PROJECT_NAME, hookspecs
from dssl.errors import NameCollisionError, PluginError, UnknownComponentError
from dssl.registry import ComponentEntry, ComponentKind, ComponentRegistry, unknown_name_message

DISABLE_ENV = "DSSL_DISABLE_PLUGINS"
PluginStatus = Literal["loaded", "failed", "disabled"]


@dataclass
class PluginRecord:
    """What the host knows about one entry point.

    Attributes:
        distribution: The distribution's name; ``version`` its version.
        entry_point: The entry point's name; ``target`` its ``module[:attr]``.
        status: ``loaded``, ``failed`` or ``disabled``.
        error: ``Type: message`` of a failure; ``detail`` its traceback.
        components: The components it registered.
        api_range: The plugin API range it declares (``dssl_plugin_api``), or ``None`` when undeclared.
        declared: ``(kind, name)`` a failed plugin would provide (read from its source).
        hooks: The lifecycle hooks it implements (``dssl_run_finished``, ...).
        collides_with: The distribution that already registered a name this plugin registers (it then failed).
    """

    distribution: str
    version: str
    entry_point: str
    target: str
    status: PluginStatus
    error: str | None = None
    detail: str | None = None
    components: list[ComponentEntry] = field(default_factory=list)
    api_range: str | None = None
    declared: set[tuple[str, str]] = field(default_factory=set)
    hooks: list[str] = field(default_factory=list)
    collides_with: str | None = None

    def provides(self, kind: str, name: str) -> bool:
        """Whether this plugin (even a failed one) is the likely home of ``kind:name``."""
        if any(c.kind == kind and c.name == name for c in self.components) or (kind, name) in self.declared:
            return True
        short = self.distribution.lower().removeprefix("dssl-").replace("_", "-")
        return name.replace("_", "-") in {self.entry_point.replace("_", "-"), short}


@dataclass(frozen=True)
class PluginSource:
    """An entry point to load: normally from ``importlib.metadata``, injectable for tests."""

    distribution: str
    version: str
    name: str
    value: str

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        module = importlib.import_module(module_name)
        return functools.reduce(getattr, attr.split("."), module) if attr else module


def discover_sources() -> list[PluginSource]:
    """All entry points of the ``dssl`` group, one per (distribution, name)."""
    seen: dict[tuple[str, str], PluginSource] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "unknown"
        version = dist.version if dist is not None else "unknown"
        seen.setdefault((dist_name.lower(), ep.name), PluginSource(dist_name, version, ep.name, ep.value))
    # The core first, so that built-in names win the race only through order, never silently.
    return sorted(seen.values(), key=lambda s: (s.distribution != "dssl-bench", s.distribution.lower(), s.name))


def disabled_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip().lower() for part in raw.replace(";", ",").split(",") if part.strip()}


class PluginHost:
    """Loads plugins and owns the :class:`pluggy.PluginManager` and the :class:`ComponentRegistry`.

    Args:
        disabled: Distribution names to skip (case-insensitive), added to ``$DSSL_DISABLE_PLUGINS``.
        strict: Raise :class:`PluginError` on the first plugin failure instead of skipping the plugin.
        sources: Entry points to load; defaults to the installed ``dssl`` entry points.
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool = False,
        sources: Sequence[PluginSource] | None = None,
    ) -> None:
        self.strict = strict
        self.disabled = {d.lower() for d in disabled} | disabled_from_env()
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = ComponentRegistry()
        self.records: list[PluginRecord] = []
        for source in discover_sources() if sources is None else sources:
            self._load(source)

    # --- loading --------------------------------------------------------------------------------

    def _load(self, source: PluginSource) -> None:
        record = PluginRecord(
            distribution=source.distribution,
            version=source.version,
            entry_point=source.name,
            target=source.value,
            status="loaded",
        )
        self.records.append(record)
        if source.distribution.lower() in self.disabled:
            record.status = "disabled"
            return
        plugin_name = f"{source.distribution}:{source.name}"
        try:
            plugin = source.load()
            record.api_range = _check_api_range(plugin)
            self.pm.register(plugin, name=plugin_name)
            _check_unknown_hooks(self.pm, plugin)
            for kind, hook_name in hookspecs.CONTRIBUTION_HOOKS.items():
                caller = self.pm.subset_hook_caller(
                    hook_name, remove_plugins=[p for p in self.pm.get_plugins() if p is not plugin]
                )
                caller(registry=self.registry.for_kind(kind, distribution=source.distribution))  # type: ignore[arg-type]
        except Exception as exc:
            self._fail(record, plugin_name, exc)
            return
        record.components = [e for e in self.registry if e.distribution == source.distribution]
        contribution = set(hookspecs.CONTRIBUTION_HOOKS.values())
        record.hooks = sorted(
            caller.name for caller in self.pm.get_hookcallers(plugin) or [] if caller.name not in contribution
        )

    def _fail(self, record: PluginRecord, plugin_name: str, exc: Exception) -> None:
        record.declared = {(e.kind, e.name) for e in self.registry if e.distribution == record.distribution}
        record.declared |= declared_components(record.target.partition(":")[0])
        self.registry.remove_distribution(record.distribution)
        if self.pm.has_plugin(plugin_name):
            self.pm.unregister(name=plugin_name)
        record.status = "failed"
        record.collides_with = exc.first if isinstance(exc, NameCollisionError) else None
        record.error = f"{type(exc).__name__}: {exc}"
        record.detail = "".join(traceback.format_exception(exc))
        if self.strict:
            raise PluginError(
                f"plugin {record.distribution} (entry point '{record.entry_point}') failed to load: {record.error}"
            ) from exc

    # --- queries --------------------------------------------------------------------------------

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.status == "failed"]

    def get(self, kind: ComponentKind, name: str) -> ComponentEntry:
        """The component, or an error naming the broken/disabled plugin that should have provided it."""
        try:
            return self.registry.get(kind, name)
        except UnknownComponentError:
            for record in self.records:
                if record.status == "failed" and record.provides(kind, name):
                    raise PluginError(
                        f"{kind} '{name}' is provided by plugin {record.distribution}, which failed to "
                        f"load: {record.error}"
                    ) from None
                if record.status == "disabled" and record.provides(kind, name):
                    raise UnknownComponentError(
                        f"{kind} '{name}' is provided by plugin {record.distribution}, which is disabled "
                        f"(--disable-plugin / ${DISABLE_ENV})"
                    ) from None
            message = unknown_name_message(kind, name, self.registry.names(kind))
            # A failed plugin whose components could not be read may be the one that provides the name.
            unread = [r for r in self.failures if not r.declared]
            if unread:
                failed = "; ".join(f"{r.distribution} ({r.error})" for r in unread)
                message += f"; plugins that failed to load, which may provide it: {failed} (see `dssl plugins`)"
            elif self.failures:
                failed = ", ".join(r.distribution for r in self.failures)
                message += f"; plugins that failed to load: {failed} (see `dssl plugins`)"
            disabled = [r.distribution for r in self.records if r.status == "disabled"]
            if disabled:
                message += f"; plugins disabled: {', '.join(disabled)}"
            raise UnknownComponentError(message) from None

    @property
    def hook(self) -> Any:
        """Lifecycle hooks, e.g. ``host.hook.dssl_run_started(run=..., config=...)``."""
        return self.pm.hook


def declared_components(module_name: str) -> set[tuple[str, str]]:
    """The ``(kind, name)`` pairs a plugin module registers with literal names, read from its source.

    The module is not executed (its import may be what failed): its file is located, parsed, and every
    ``<registry>.add("name", ...)`` call inside a ``dssl_register_<kind>s`` function counts. Names computed
    at run time are not found; a module that cannot be located or parsed declares nothing.

    Args:
        module_name: The plugin module, e.g. ``"dssl_broken.plugin"``.
    """
    try:
        spec = importlib.util.find_spec(module_name)
        origin = spec.origin if spec is not None else None
        tree = ast.parse(Path(origin).read_text(encoding="utf-8")) if origin and origin.endswith(".py") else None
    except Exception:  # a parent package that fails to import, an unreadable file, a syntax error
        return set()
    if tree is None:
        return set()
    kinds = {hook: kind for kind, hook in hookspecs.CONTRIBUTION_HOOKS.items()}
    found: set[tuple[str, str]] = set()
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or function.name not in kinds:
            continue
        for call in ast.walk(function):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "add"
                and call.args
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                found.add((kinds[function.name], call.args[0].value))
    return found


def _check_api_range(plugin: ModuleType | Any) -> str | None:
    declared = getattr(plugin, "dssl_plugin_api", None)
    if declared is None:
        return None
    try:
        spec = SpecifierSet(str(declared))
    except InvalidSpecifier as exc:
        raise PluginError(f"invalid dssl_plugin_api specifier {declared!r}: {exc}") from None
    if Version(PLUGIN_API_VERSION) not in spec:
        raise PluginError(
            f"plugin supports dssl plugin API {declared}, but this dssl provides API {PLUGIN_API_VERSION}"
        )
    return str(declared)


def _check_unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> None:
    """A ``dssl_*`` hook implementation without a specification is a typo, not an extension point."""
    unknown = [
        impl.function.__name__
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    ]
    if unknown:
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("dssl_")))
        raise PluginError(f"unknown hook(s) {', '.join(sorted(unknown))}; known hooks: {known}")


@functools.lru_cache(maxsize=8)
def _cached_host(disabled: frozenset[str], strict: bool, env_disabled: frozenset[str]) -> PluginHost:
    return PluginHost(disabled=disabled, strict=strict)


def get_host(*, disabled: Iterable[str] = (), strict: bool = False) -> PluginHost:
    """The process-wide plugin host for these settings (entry points are scanned once)."""
    return _cached_host(frozenset(d.lower() for d in disabled), strict, frozenset(disabled_from_env()))


def clear_host_cache() -> None:
    _cached_host.cache_clear()
