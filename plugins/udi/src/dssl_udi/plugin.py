"""Registers the UDI objective and augmentation; only strings here, so listing them imports no torch."""

from __future__ import annotations

from dssl import hookimpl
from dssl.plugin import KindRegistry

dssl_plugin_api = ">=1.1,<2"

_PAPER = "arXiv 2407.17671 (Su & Ji, Unsqueeze [CLS] Bottleneck to Learn Rich Representations, ECCV 2024)"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "udi",
        "dssl_udi.objective:UDIObjective",
        summary="UDI: DINO [CLS] + extra [CLS+] distilled from blended patch/image logits + SRS patch-level loss",
        paper=_PAPER,
        options="dssl_udi.config:UDIOptions",
        default_augmentation="udi",
        code="https://github.com/ISL-CV/udi",
        test_options={"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "global_window": 1, "local_window": 1},
    )


@hookimpl
def dssl_register_augmentations(registry: KindRegistry) -> None:
    registry.add(
        "udi",
        "dssl_udi.augmentation:UDIAugmentation",
        summary="UDI multi-crop: teacher global crop and locals sampled with reference to the student crop",
        paper=_PAPER,
        options="dssl_udi.augmentation_config:UDIAugmentationOptions",
        test_options={"global_size": 32, "local_size": 16, "n_local": 2},
    )
