"""``dssl new-plugin NAME --kind KIND``: generate a plugin package that installs and passes its tests as generated.

One package can hold components of several kinds (``objective``, ``augmentation``, ``evaluator``, ``dataset``,
``backbone``) and a lifecycle hook (``hook``). Each kind brings a module with a small working example, its options
model in ``config.py``, its registration in ``plugin.py`` and a section of the README; the generated conformance
test lists what ``plugin.py`` registers, so it fails when the plugin does not load, registers nothing, or collides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

from dssl import PLUGIN_API_VERSION, __version__
from dssl.errors import UsageError

__all__ = ["KINDS", "ScaffoldNames", "bench_command", "scaffold_plugin"]

#: What ``--kind`` accepts: the component kinds, and ``hook`` for a lifecycle hook.
KINDS = ("objective", "augmentation", "evaluator", "dataset", "backbone", "hook")

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
_TEMPLATES = Path(__file__).with_name("templates")

#: Per kind: the module it writes, the names ``config.py`` imports for its options, those ``plugin.py`` imports
#: for its registration, and its one-line summary.
_KIND_FILES = {
    "objective": "objective.py",
    "augmentation": "augmentation.py",
    "evaluator": "evaluator.py",
    "dataset": "dataset.py",
    "backbone": "backbone.py",
}
_CONFIG_IMPORTS: dict[str, dict[str, set[str]]] = {
    "objective": {"pydantic": {"BaseModel", "ConfigDict", "Field"}},
    "augmentation": {"pydantic": {"BaseModel", "ConfigDict", "Field"}},
    "evaluator": {"dssl.plugin": {"DenseEvalOptions"}},
    "dataset": {"pydantic": {"BaseModel", "ConfigDict", "Field"}},
    "backbone": {"pydantic": {"BaseModel", "ConfigDict", "Field", "model_validator"}},
}
_ROWS = {
    "objective": "the objective: an `nn.Module` returning its losses for a batch of views",
    "augmentation": "the augmentation: one image to views with their geometry",
    "evaluator": "the evaluator: frozen features to versioned metrics",
    "dataset": "the dataset factory and its items",
    "backbone": "the backbone: images to tokens on a patch grid",
}
_HOOK_NAMES = {"hook": "dssl_run_finished"}


@dataclass(frozen=True)
class ScaffoldNames:
    """The names a plugin called ``name`` gets.

    Attributes:
        name: The components' registered name (``my_method``); every kind's component uses it.
        distribution: ``dssl-my-method``.
        module: ``dssl_my_method``.
        camel: ``MyMethod``, the prefix of the classes (``MyMethodObjective``, ``MyMethodObjectiveOptions``).
    """

    name: str
    distribution: str
    module: str
    camel: str

    @classmethod
    def from_name(cls, name: str) -> ScaffoldNames:
        if not _NAME.match(name):
            raise UsageError(
                f"invalid plugin name {name!r}: use 2-41 lower-case letters, digits or _, starting with a letter"
            )
        camel = "".join(part.capitalize() for part in name.split("_"))
        return cls(name, f"dssl-{name.replace('_', '-')}", f"dssl_{name}", camel)


def scaffold_plugin(
    name: str, output_dir: str | Path = ".", *, kinds: Iterable[str] = ("objective",), force: bool = False
) -> Path:
    """Write the package ``dssl-<name>/`` under ``output_dir`` and return its path.

    Args:
        name: The plugin's name (:class:`ScaffoldNames`).
        output_dir: Where the package folder is created.
        kinds: What it contributes, any of :data:`KINDS` (order does not matter).
        force: Overwrite the files of an existing, non-empty folder.

    Raises:
        UsageError: An invalid name or kind, or a non-empty folder without ``force``.
    """
    names = ScaffoldNames.from_name(name)
    chosen = [kind for kind in KINDS if kind in set(kinds)]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not chosen:
        raise UsageError(f"--kind {', '.join(unknown) or '(none)'}: expected any of {', '.join(KINDS)}")
    root = Path(output_dir) / names.distribution
    if root.exists() and any(root.iterdir()) and not force:
        raise UsageError(f"{root} already exists and is not empty (use --force to overwrite)")
    values = _values(names, chosen)
    files = {
        "pyproject.toml": _render("common/pyproject.toml.tmpl", values),
        "README.md": _render("common/README.md.tmpl", values),
        f"src/{names.module}/__init__.py": _render("common/__init__.py.tmpl", values),
        f"src/{names.module}/plugin.py": _render("common/plugin.py.tmpl", values),
        f"tests/test_{names.name}.py": _render("common/test_plugin.py.tmpl", values),
    }
    if any(kind in _KIND_FILES for kind in chosen):
        files[f"src/{names.module}/config.py"] = _render("common/config.py.tmpl", values)
    for kind in chosen:
        if kind in _KIND_FILES:
            files[f"src/{names.module}/{_KIND_FILES[kind]}"] = _render(f"{kind}/module.py.tmpl", values)
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.rstrip("\n") + "\n")
    return root


def _values(names: ScaffoldNames, kinds: list[str]) -> dict[str, str]:
    """Everything the templates substitute, the per-kind parts already rendered."""
    major = int(PLUGIN_API_VERSION.split(".")[0])
    base = {
        "name": names.name,
        "distribution": names.distribution,
        "module": names.module,
        "camel": names.camel,
        "env": f"DSSL_{names.name.upper()}_RUNS_LOG",
        "dssl_version": __version__,
        "api_range": f">={PLUGIN_API_VERSION},<{major + 1}",
        "default_augmentation": names.name if "augmentation" in kinds else "multicrop",
    }
    components = [kind for kind in kinds if kind in _KIND_FILES]
    hooks = [_HOOK_NAMES[kind] for kind in kinds if kind in _HOOK_NAMES]
    described = ", ".join(f"{'an' if kind[0] in 'aeo' else 'a'} {kind}" for kind in components)
    described += (" and " if described else "") + ("a lifecycle hook" if hooks else "")
    base["summary"] = f"{names.name}: {described} for dssl."
    base["described"] = described
    base["components"] = "{" + "".join(f'\n    "{kind}": ["{names.name}"],' for kind in components) + "\n}"
    base["hook_names"] = "[" + ", ".join(f'"{hook}"' for hook in hooks) + "]"
    base["command"] = bench_command(names.name, components)
    base["hooks"] = "".join(_render(f"{kind}/hook.py.tmpl", base) for kind in kinds)
    base["imports"] = _plugin_imports(components, hooks)
    base["options"] = "".join(_render(f"{kind}/options.py.tmpl", base) for kind in components)
    base["rows"] = "".join(f"| `src/{names.module}/{_KIND_FILES[kind]}` | {_ROWS[kind]} |\n" for kind in components)
    base["hook_row"] = " and the lifecycle hook" if hooks else ""
    base["sections"] = "".join(_render(f"{kind}/readme.md.tmpl", base) for kind in kinds)
    config = _import_lines(_merge(_CONFIG_IMPORTS[kind] for kind in components))
    return base | {"imports_config": config}


def _render(template: str, values: Mapping[str, str]) -> str:
    return Template((_TEMPLATES / template).read_text()).substitute(values)


def _merge(needs: Iterable[dict[str, set[str]]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for need in needs:
        for module, names in need.items():
            merged.setdefault(module, set()).update(names)
    return merged


def _import_lines(imports: Mapping[str, set[str]]) -> str:
    """``from m import a, b`` lines, third-party and dssl apart, as isort orders them."""
    if not imports:
        return ""
    lines = [
        f"from {module} import {', '.join(sorted(names, key=str.lower))}" for module, names in sorted(imports.items())
    ]
    return "\n" + "\n".join(lines) + "\n"


def _plugin_imports(components: list[str], hooks: list[str]) -> str:
    standard = ["import json", "import os"] if hooks else []
    dssl_names = {"KindRegistry"} if components else set()
    lines = [*standard]
    if hooks:
        lines.append("from typing import TYPE_CHECKING")
    head = "\n".join(lines) + ("\n\n" if lines else "")
    head += "from dssl import hookimpl\n"
    if dssl_names:
        head += f"from dssl.plugin import {', '.join(sorted(dssl_names))}\n"
    if hooks:
        head += "\nif TYPE_CHECKING:\n    from dssl.plugin import RunInfo, RunResults\n"
    return "\n" + head


def bench_command(name: str, kinds: Iterable[str]) -> str:
    """The ``dssl bench`` command that uses every generated component (the README's and the CLI's hint)."""
    components = set(kinds)
    flags = {
        "objective": f"--objective {name}",
        "backbone": f"--backbone {name}",
        "dataset": f"--dataset {name}",
        "augmentation": f"--augmentation {name}",
        "evaluator": f"--eval {name}",
    }
    order = ("objective", "backbone", "dataset", "augmentation", "evaluator")
    parts = [flags[kind] for kind in order if kind in components]
    if "objective" not in components:
        parts.insert(0, "--objective dino")
    if "backbone" not in components:
        parts.insert(1, "--backbone vit_t16")
    return "dssl bench " + " ".join(parts) + " --steps 20"
