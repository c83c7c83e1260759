"""Registers the ``cotap`` objective; only strings here, so listing plugins imports no torch."""

from __future__ import annotations

from dssl import hookimpl
from dssl.plugin import KindRegistry

dssl_plugin_api = ">=1.1,<2"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "cotap",
        "dssl_cotap.objective:CoTAPObjective",
        summary="CoTAP (reconstructed): DINO + λ·continuous-target AP over teacher patch-similarity maps",
        paper="arXiv 2509.09429",
        options="dssl_cotap.config:CoTAPOptions",
        default_augmentation="multicrop",
        test_options={
            "out_dim": 64,
            "hidden_dim": 64,
            "bottleneck_dim": 32,
            "patch_dim": 32,
            "patch_hidden_dim": 64,
            "freeze_last_layer_steps": 0,
        },
    )
