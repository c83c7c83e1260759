"""Registers the PaKA objective and its augmentation; only strings here, so listing them imports no torch."""

from __future__ import annotations

from dssl import hookimpl
from dssl.plugin import KindRegistry

dssl_plugin_api = ">=1.1,<2"

_PAPER = "arXiv 2509.05606"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "paka",
        "dssl_paka.objective:PaKAObjective",
        summary="PaKA: 1 - CKA between ROI-aligned teacher/student patch kernels (post-training, clean EMA teacher)",
        paper=_PAPER,
        options="dssl_paka.config:PaKAOptions",
        default_augmentation="paka",
        test_options={"out_dim": 32, "hidden_dim": 64, "roi_grid": 3},
    )


@hookimpl
def dssl_register_augmentations(registry: KindRegistry) -> None:
    registry.add(
        "paka",
        "dssl_paka.augmentation:PaKACrop",
        summary="Multi-crop with a clean (augmentation-free) teacher rendering and high-overlap student locals",
        paper=_PAPER,
        options="dssl_paka.augmentation_config:PaKACropOptions",
        test_options={"global_size": 32, "local_size": 16, "n_local": 2},
    )
