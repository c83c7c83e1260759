"""Backbones: timm VisionTransformers with dssl's token contract, and their checkpoint loading.

Importing this package stays light; the torch/timm modules load on first attribute access.

Example:
    >>> from dssl.backbones import build_vit  # doctest: +SKIP
    >>> backbone = build_vit(name="vit_t16", img_size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule; resolved lazily so that `import dssl.backbones.vit_config` does not pull torch.
_EXPORTS = {
    "ViTOptions": "vit_config",
    "ALIASES": "vit",
    "Backbone": "tokens",
    "TokenOutput": "tokens",
    "ViTBackbone": "vit",
    "build_vit": "vit",
    "InitReport": "checkpoint",
    "load_init": "checkpoint",
    "save_backbone": "checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
