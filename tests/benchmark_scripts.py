"""Load a script under ``benchmarks/`` as a module, for tests of its functions.

Import it as ``from tests.benchmark_scripts import load_benchmark_script`` (the repository root is on
``sys.path`` through its conftest).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(relative_path: str, module_name: str) -> ModuleType:
    """``benchmarks/<relative_path>`` as module ``module_name``, registered in ``sys.modules`` (dataclasses need it)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / relative_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
