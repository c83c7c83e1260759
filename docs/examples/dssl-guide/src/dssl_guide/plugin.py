"""Registers this package's components and hooks with dssl (entry-point group ``dssl``).

Only strings and light modules here: ``dssl plugins`` imports this module to list the plugin, and every entry
names its implementation lazily (``"package.module:attribute"``), imported only when a run uses it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from dssl import hookimpl
from dssl.plugin import KindRegistry

if TYPE_CHECKING:
    from dssl.plugin import RunInfo, RunResults

#: The dssl plugin API versions this plugin works with (optional); dssl outside the range skips the plugin
#: and ``dssl plugins`` says why.
dssl_plugin_api = ">=1.1,<2"


@hookimpl
def dssl_register_objectives(registry: KindRegistry) -> None:
    registry.add(
        "guide",
        "dssl_guide.objective:GuideObjective",
        summary="Example: cosine invariance of corresponding patches and of whole views across two global views",
        options="dssl_guide.config:GuideObjectiveOptions",
        default_augmentation="guide",
        test_options={"projector_dim": 16},
    )


@hookimpl
def dssl_register_augmentations(registry: KindRegistry) -> None:
    registry.add(
        "guide",
        "dssl_guide.augmentation:GuideAugmentation",
        summary="Example: two random square crops with flips, resized, with their geometry",
        options="dssl_guide.config:GuideAugmentationOptions",
        test_options={"size": 32},
    )


@hookimpl
def dssl_register_evaluators(registry: KindRegistry) -> None:
    registry.add(
        "guide",
        "dssl_guide.evaluator:GuideEvaluator",
        summary="Example: nearest class centroid of frozen patch features, mIoU",
        options="dssl_guide.config:GuideEvaluatorOptions",
        protocol="guide",
    )


@hookimpl
def dssl_register_datasets(registry: KindRegistry) -> None:
    registry.add(
        "guide",
        "dssl_guide.dataset:build_dataset",
        summary="Example: procedural stripe textures with per-pixel labels, generated (no download)",
        options="dssl_guide.config:GuideDatasetOptions",
        test_options={"size": 32, "num_train": 8, "num_val": 4},
    )


@hookimpl
def dssl_register_backbones(registry: KindRegistry) -> None:
    registry.add(
        "guide",
        "dssl_guide.backbone:build_backbone",
        summary="Example: a small transformer on 16x16 patches, written from scratch",
        options="dssl_guide.config:GuideBackboneOptions",
    )


@hookimpl
def dssl_run_finished(run: RunInfo, status: str, results: RunResults | None) -> None:
    """Append one JSON line per finished run to the file named by ``$DSSL_GUIDE_RUNS_LOG`` (nothing when it is unset).

    A lifecycle hook runs in every run of every objective. It may take any subset of the hook's arguments
    (``dssl_run_finished(run, status)`` works too), so it keeps working when dssl adds new ones.
    """
    path = os.environ.get("DSSL_GUIDE_RUNS_LOG")
    if not path:
        return
    metrics = {} if results is None else {k: v for e in results.evaluations for k, v in e.flat_metrics().items()}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps({"run_id": run.run_id, "status": status, "metrics": metrics}) + "\n")
