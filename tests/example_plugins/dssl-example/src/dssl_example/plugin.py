"""Registers the example objective; only strings here, so listing it imports no torch."""

from __future__ import annotations

from dssl import hookimpl
from dssl.plugin import KindRegistry

dssl_plugin_api = ">=1.1,<2"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "example_cls_mse",
        "dssl_example.objective:ClsMSEObjective",
        summary="Example: MSE between normalised [CLS] embeddings of two global views (stop-gradient target)",
        options="dssl_example.config:ClsMSEOptions",
        default_augmentation="multicrop",
    )
