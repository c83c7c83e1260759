"""The component registry: lazy entries contributed by plugins through the ``dssl_register_*`` hooks.

An entry names its implementation by import path (``"package.module:attr"``), so that listing
components imports nothing heavy. The implementation and its options model are imported on first use.

Example:
    >>> registry = ComponentRegistry()
    >>> registry.for_kind("objective", distribution="my-dist").add(
    ...     "mine", "my_pkg.objective:MyObjective", summary="My objective.", options="my_pkg.config:MyOptions"
    ... )
    >>> [e.name for e in registry.entries("objective")]
    ['mine']
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dssl.errors import NameCollisionError, PluginError, UnknownComponentError

ComponentKind = Literal["backbone", "objective", "augmentation", "evaluator", "dataset"]
COMPONENT_KINDS: tuple[ComponentKind, ...] = ("backbone", "objective", "augmentation", "evaluator", "dataset")

#: Registry metadata every kind accepts (``registry.add(..., key=value)``): key -> what it means.
COMMON_METADATA: dict[str, str] = {
    "test_options": "option overrides that keep the conformance checks small and fast on a CPU (a mapping)",
    "requires_module": "the module of an optional extra the component needs; the conformance tests skip the "
    "component when it is missing (e.g. 'faiss')",
    "code": "the official code the component follows (a URL, optionally @commit)",
}
#: Registry metadata of each kind, beyond :data:`COMMON_METADATA`: key -> what it means.
KIND_METADATA: dict[str, dict[str, str]] = {
    "backbone": {
        "timm_name": "the timm model an alias builds (e.g. 'vit_small_patch16_224'); passed to the factory",
        "timm_args": "timm.create_model arguments over the model's own (a mapping); passed to the factory",
        "test_name": "the model the conformance checks build when the entry is generic (like 'timm')",
    },
    "objective": {
        "default_augmentation": "the augmentation a run uses unless --augmentation says otherwise "
        "(default 'multicrop')",
    },
    "augmentation": {},
    "evaluator": {
        "protocol": "the protocol id its results carry; the conformance suite checks that they agree",
        "diagnostic": "True for a diagnostic, not a benchmark score",
    },
    "dataset": {
        "requires_data": "True when it reads files from --data-root (it then needs test_fixture)",
        "test_fixture": "'package.module:writer', writer(folder) -> data_root holding a tiny copy in the real "
        "format, for the conformance suite",
    },
}

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.+-]*$")
_TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_target(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ComponentEntry:
    """One registered component.

    Attributes:
        kind: One of :data:`COMPONENT_KINDS`.
        name: The name users type (``--objective dino``); lower case.
        target: ``"package.module:attr"`` of the implementation (class or factory).
        summary: One line shown by ``dssl plugins``.
        distribution: The distribution that registered it (filled in by the plugin host).
        paper: Reference (``"arXiv 2104.14294"``, a DOI or a URL), if any.
        options: ``"package.module:Model"`` of the pydantic options model, or the class itself; ``None``
            when the component takes no options. Options modules must not import torch.
        metadata: Facts the harness reads: the keys of :data:`COMMON_METADATA` and the kind's keys of
            :data:`KIND_METADATA` (e.g. ``default_augmentation`` of an objective, ``protocol`` of an evaluator);
            any other key is refused when the entry is added.
    """

    kind: ComponentKind
    name: str
    target: str
    summary: str
    distribution: str
    paper: str | None = None
    options: str | type | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    def load(self) -> Any:
        """Import and return the implementation."""
        try:
            return import_target(self.target)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{self.kind} '{self.name}' from {self.distribution}: cannot import {self.target}: {exc}"
            ) from exc

    def options_model(self) -> type | None:
        """The pydantic model of this component's options, imported on demand."""
        if self.options is None or isinstance(self.options, type):
            return self.options
        try:
            return import_target(self.options)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{self.kind} '{self.name}' from {self.distribution}: cannot import options model {self.options}: {exc}"
            ) from exc


class KindRegistry:
    """The view of the registry that one contribution hook receives: bound to a kind and a distribution."""

    def __init__(self, registry: ComponentRegistry, kind: ComponentKind, distribution: str) -> None:
        self._registry = registry
        self.kind = kind
        self.distribution = distribution

    def add(
        self,
        name: str,
        target: str,
        *,
        summary: str,
        paper: str | None = None,
        options: str | type | None = None,
        **metadata: Any,
    ) -> ComponentEntry:
        """Register a lazy entry; see :class:`ComponentEntry` for the arguments."""
        entry = ComponentEntry(
            kind=self.kind,
            name=name,
            target=target,
            summary=summary,
            distribution=self.distribution,
            paper=paper,
            options=options,
            metadata=dict(metadata),
        )
        self._registry.add(entry)
        return entry


class ComponentRegistry:
    """All registered components, by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[ComponentKind, dict[str, ComponentEntry]] = {kind: {} for kind in COMPONENT_KINDS}

    def for_kind(self, kind: ComponentKind, *, distribution: str) -> KindRegistry:
        if kind not in self._entries:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {', '.join(COMPONENT_KINDS)}")
        return KindRegistry(self, kind, distribution)

    def add(self, entry: ComponentEntry) -> None:
        if not _NAME_PATTERN.match(entry.name):
            raise PluginError(
                f"{entry.distribution}: invalid {entry.kind} name {entry.name!r} "
                "(lower case letters, digits and _ . + - ; starting with a letter)"
            )
        if not _TARGET_PATTERN.match(entry.target):
            raise PluginError(
                f"{entry.distribution}: {entry.kind} '{entry.name}' has target {entry.target!r}; "
                "expected 'package.module:attribute'"
            )
        if not entry.summary.strip():
            raise PluginError(f"{entry.distribution}: {entry.kind} '{entry.name}' needs a one-line summary")
        accepted = COMMON_METADATA.keys() | KIND_METADATA[entry.kind].keys()
        unknown = sorted(set(entry.metadata) - accepted)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(accepted), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            keys = ", ".join(repr(k) for k in unknown)
            raise PluginError(
                f"{entry.distribution}: {entry.kind} '{entry.name}' has unknown registry metadata {keys}; "
                f"{hint}accepted for a {entry.kind}: {', '.join(sorted(accepted))}"
            )
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise NameCollisionError(entry.kind, entry.name, existing.distribution, entry.distribution)
        self._entries[entry.kind][entry.name] = entry

    def remove_distribution(self, distribution: str) -> None:
        """Drop every entry of a distribution (used when its plugin turns out to be broken)."""
        for by_name in self._entries.values():
            for name in [n for n, e in by_name.items() if e.distribution == distribution]:
                del by_name[name]

    def entries(self, kind: ComponentKind | None = None) -> list[ComponentEntry]:
        kinds = COMPONENT_KINDS if kind is None else (kind,)
        return [e for k in kinds for _, e in sorted(self._entries[k].items())]

    def names(self, kind: ComponentKind) -> list[str]:
        return sorted(self._entries[kind])

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(self.entries())

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._entries.get(kind, {})  # type: ignore[call-overload]

    def get(self, kind: ComponentKind, name: str) -> ComponentEntry:
        """The entry of that kind and name, or :class:`UnknownComponentError` with "did you mean"."""
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(unknown_name_message(kind, name, self.names(kind))) from None


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    available = ", ".join(known) if known else "none registered"
    return f"unknown {kind} '{name}'{hint} (available: {available})"
