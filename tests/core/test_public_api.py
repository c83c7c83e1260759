"""First-party plugins, the example plugins, the plugin-guide examples and ``benchmarks/`` use only the public API.

The public API is the ``__all__`` of :data:`PUBLIC_MODULES`: the top-level package, the Python API
(:mod:`dssl.api`, the public part of :mod:`dssl.runner`), the plugin API (:mod:`dssl.plugin`) and the
conformance suite (:mod:`dssl.testing`). Any other ``dssl`` module, and any name outside an ``__all__``, is private
to the core: importing it (or reaching it as ``dssl.x.y``) is what this test refuses.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = ("dssl", "dssl.api", "dssl.plugin", "dssl.runner", "dssl.testing")
#: Code that must be written against the public API only (tests of the harness itself may reach further).
SCANNED = (
    "plugins/*/src/**/*.py",
    "tests/example_plugins/*/src/**/*.py",
    "docs/examples/**/*.py",
    "benchmarks/**/*.py",
)


def public_names() -> dict[str, set[str]]:
    """Public module -> the names it exports."""
    return {name: set(importlib.import_module(name).__all__) for name in PUBLIC_MODULES}


def private_uses(source: str, public: dict[str, set[str]]) -> list[str]:
    """Every use of a private dssl name in ``source``: ``"line N: dssl.x.y"``."""
    found: list[str] = []
    bound_to_module: dict[str, str] = {}  # local name -> the public dssl module it names

    def check(line: int, dotted: str) -> None:
        module, _, name = dotted.rpartition(".")
        if dotted in public or (module in public and name in public[module]):
            return
        found.append(f"line {line}: {dotted}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "dssl" or alias.name.startswith("dssl."):
                    if alias.name not in public:
                        found.append(f"line {node.lineno}: {alias.name}")
                    bound_to_module[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "dssl"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "dssl" and not node.module.startswith("dssl."):
                continue
            if node.module not in public:
                found.append(f"line {node.lineno}: {node.module}")
                continue
            for alias in node.names:
                check(node.lineno, f"{node.module}.{alias.name}")
                if f"{node.module}.{alias.name}" in public:
                    bound_to_module[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(ast.parse(source)):
        # dssl.x.y reached through the attributes of an imported public module
        chain: list[str] = []
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            chain.insert(0, root.attr)
            root = root.value
        if not chain or not isinstance(root, ast.Name) or root.id not in bound_to_module:
            continue
        module = bound_to_module[root.id]
        for attr in chain:
            if f"{module}.{attr}" not in public:
                check(node.lineno, f"{module}.{attr}")
                break
            module = f"{module}.{attr}"
    return sorted(set(found), key=lambda text: (int(text.split(":")[0].split()[1]), text))


def scanned_files() -> list[Path]:
    return sorted({path for pattern in SCANNED for path in ROOT.glob(pattern)})


def test_the_checker_finds_private_names_and_accepts_public_ones():
    public = public_names()
    source = (
        "import dssl\nimport dssl.api\nfrom dssl.plugin import Objective, patch_correspondence\n"
        "from dssl import hookimpl\nfrom dssl.api import build, train\nfrom dssl.runner import evaluate_backbone\n"
        "from dssl.testing import check_plugin\nx = dssl.api.resolve\ny = dssl.bench\n"
        "from dssl.runner import _train, build_run\nfrom dssl.augment.multicrop import _C_SCALE\n"
        "import dssl.engine.trainer\nz = dssl.host\nw = dssl.api.get_host\n"
    )
    assert private_uses(source, public) == [
        "line 10: dssl.runner._train",
        "line 10: dssl.runner.build_run",
        "line 11: dssl.augment.multicrop",
        "line 12: dssl.engine.trainer",
        "line 13: dssl.host",
        "line 14: dssl.api.get_host",
    ]


def test_every_public_name_exists():
    for module, names in public_names().items():
        loaded = importlib.import_module(module)
        missing = [name for name in names if not hasattr(loaded, name)]
        assert not missing, f"{module}.__all__ names what it does not have: {missing}"


def test_the_plugin_api_lists_every_name_it_loads():
    import dssl.plugin

    assert set(dssl.plugin.__all__) == set(dssl.plugin._EXPORTS)


def test_the_plugin_api_imports_no_heavy_module():
    import subprocess
    import sys

    code = (
        "import sys\nfrom dssl.plugin import hookimpl, KindRegistry, ConfigError, EvaluationResult, DenseEvalOptions\n"
        "print(','.join(m for m in ('torch', 'timm', 'mlflow', 'sklearn') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_uses_only_the_public_api(path: Path):
    uses = private_uses(path.read_text(encoding="utf-8"), public_names())
    assert not uses, f"{path.relative_to(ROOT)} uses private dssl names (public: {', '.join(PUBLIC_MODULES)}): " + (
        "; ".join(uses)
    )
