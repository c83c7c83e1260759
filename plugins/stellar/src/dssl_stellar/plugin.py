"""Registers the STELLAR objective and its view augmentation; only strings here, so listing it imports no torch."""

from __future__ import annotations

from dssl import hookimpl
from dssl.plugin import KindRegistry

dssl_plugin_api = ">=1.1,<2"

_PAPER = "arXiv 2602.01905"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "stellar",
        "dssl_stellar.objective:StellarObjective",
        summary="STELLAR: r sparse tokens x softmax localisation = low-rank map; pixel reconstruction, "
        "online clustering (Sinkhorn) and OT-matched masked views (microsoft/STELLAR)",
        paper=_PAPER,
        options="dssl_stellar.config:StellarOptions",
        default_augmentation="stellar",
        test_options={
            "num_sparse_tokens": 4,
            "num_clusters": 64,
            "prototype_dim": 16,
            "predictor_hidden_dim": 32,
            "decoder_dim": 32,
            "decoder_depth": 1,
            "decoder_heads": 2,
            "num_masks": 2,
            "masking_ratio": 0.5,
            "num_local_crops": 2,
        },
    )


@hookimpl
def dssl_register_augmentations(registry: KindRegistry) -> None:
    registry.add(
        "stellar",
        "dssl_stellar.augmentation:StellarViews",
        summary="STELLAR views: 8 global (scale 0.36-1) + 8 local (0.06-0.36) crops, colour/blur, "
        "plus the clean global view 0 (reconstruction target)",
        paper=_PAPER,
        options="dssl_stellar.config:StellarViewsOptions",
        test_options={"global_size": 32, "local_size": 16, "n_global": 2, "n_local": 2},
    )
