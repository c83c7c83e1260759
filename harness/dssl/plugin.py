"""The plugin API: everything a plugin package may import from dssl, in one place.

A plugin imports from here (``from dssl.plugin import Objective, ViewBatch, patch_correspondence``), from the
top-level package (``dssl.hookimpl``), from :mod:`dssl.testing` in its tests, and nothing else: every other
module of dssl is private to the core and may change in any release.

**Stability.** The names exported here, their signatures and the contracts they document are versioned by
:data:`PLUGIN_API_VERSION` (``MAJOR.MINOR``). Within a major version names are only added and signatures only gain
optional arguments (a minor release); removing a name or changing a contract incompatibly bumps the major
version. A plugin module may declare the range it supports, ``dssl_plugin_api = ">=1.1,<2"``: a dssl outside it
reports the plugin as failed and skips it instead of running it. The declaration is optional; without it the
plugin is loaded by any dssl and ``dssl plugins --wide`` says that its range is not declared.

Importing this module is light (no torch): the names load on first use, so a plugin's registration module may
import from here without slowing ``dssl plugins`` down.

What is here, by use:

* **Registering** — :func:`hookimpl` (``dssl.hookimpl``), :class:`KindRegistry` (what a ``dssl_register_*`` hook
  receives), :class:`ComponentEntry`, the registry metadata each kind understands (:data:`COMMON_METADATA`,
  :data:`KIND_METADATA`), :data:`PLUGIN_API_VERSION`.
* **Objectives** — :class:`Objective` (the contract the engine drives), :func:`decay_param_groups`,
  :class:`DINOObjective` (to extend DINO), the batch of views :class:`ViewBatch`.
* **Augmentations** — :class:`Views` (one image's views with their geometry), :class:`MultiCrop` and its options
  :class:`MultiCropOptions` (subclass it; :data:`DRAWS` is the layout of its random draws), :func:`collate_views`,
  :func:`normalize` and :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.
* **View geometry** — :func:`patch_correspondence`, :func:`patch_centers`, :func:`image_to_view`,
  :func:`view_to_image`, :func:`view_to_view`, :func:`overlap_box`, :func:`roi_align`, :func:`roi_sampling_grid`,
  :func:`coordinate_map`, :func:`cross_view_grid`, :func:`points_to_grid`.
* **Backbones** — :class:`TokenOutput` (what a backbone returns), :class:`Backbone` (what it offers), dssl's
  :class:`ViTBackbone` / :func:`build_vit` and :class:`ViTOptions`.
* **Building blocks** — :class:`EMATeacher`, :func:`momentum_schedule`, :class:`MLP`, :class:`DINOHead`,
  :func:`trunc_normal_init`, :class:`Center`, :func:`distributed_mean`, :func:`set_drop_path_rate`,
  :func:`forward_views`, :func:`schedule_value`, :func:`schedule_scalar`, :func:`cosine_schedule`,
  :func:`linear_warmup_then_constant`, :func:`sinkhorn_knopp`, :func:`sinkhorn_match`, :func:`koleo_loss`.
* **Datasets** — :class:`DenseDataset` (what a dataset offers), :class:`DatasetItem` (its items),
  :class:`DatasetFactory` (what a dataset entry names).
* **Evaluators** — :class:`Evaluator`, :class:`DenseEvaluator`, :class:`ImageEvaluator` (base classes),
  :class:`EvaluationInputs`, :class:`DenseEvalOptions`, :class:`ImageEvalOptions`, :func:`dataset_info`,
  :func:`paired_info`, :func:`mean_std`, :class:`ConfusionMatrix`, :func:`miou`, :func:`pixel_accuracy`,
  :func:`hungarian_match`, :func:`many_to_one_match`, :func:`apply_mapping`, and the results
  :class:`EvaluationResult` / :class:`MetricValue`.
* **Lifecycle hooks** — :class:`RunInfo`, :class:`RunResults` (the arguments of ``dssl_run_*`` hooks).
* **Errors** — :class:`ConfigError` (bad options: exit code 2 with your one-line message), :class:`PluginError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dssl import PLUGIN_API_VERSION, hookimpl
    from dssl.augment.geometry import (
        coordinate_map,
        cross_view_grid,
        image_to_view,
        overlap_box,
        patch_centers,
        patch_correspondence,
        points_to_grid,
        roi_align,
        roi_sampling_grid,
        view_to_image,
        view_to_view,
    )
    from dssl.augment.multicrop import DRAWS, DrawColumns, MultiCrop, ViewBatch, Views, collate_views
    from dssl.augment.multicrop_config import FloatPair, MultiCropOptions
    from dssl.backbones.tokens import Backbone, TokenOutput
    from dssl.backbones.vit import ViTBackbone, build_vit
    from dssl.backbones.vit_config import ViTOptions
    from dssl.data.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize
    from dssl.data.protocol import DatasetFactory, DatasetItem, DenseDataset
    from dssl.errors import ConfigError, PluginError
    from dssl.evaluators.base import (
        DenseEvaluator,
        EvaluationInputs,
        Evaluator,
        FeatureFn,
        ImageEvaluator,
        ImageFeatureFn,
        Measurement,
        ProgressFn,
        dataset_info,
        mean_std,
        paired_info,
    )
    from dssl.evaluators.common_config import DenseEvalOptions, ImageEvalOptions
    from dssl.evaluators.confusion import (
        ConfusionMatrix,
        apply_mapping,
        hungarian_match,
        many_to_one_match,
        miou,
        pixel_accuracy,
    )
    from dssl.evaluators.extraction import DatasetInfo, DenseCache
    from dssl.layers.centering import Center, distributed_mean
    from dssl.layers.drop_path import set_drop_path_rate
    from dssl.layers.ema import EMATeacher, momentum_schedule
    from dssl.layers.heads import MLP, DINOHead, trunc_normal_init
    from dssl.layers.koleo import koleo_loss
    from dssl.layers.multicrop_forward import forward_views
    from dssl.layers.schedules import cosine_schedule, linear_warmup_then_constant, schedule_scalar, schedule_value
    from dssl.layers.sinkhorn import sinkhorn_knopp, sinkhorn_match
    from dssl.objectives.base import Objective, decay_param_groups
    from dssl.objectives.dino import DINOObjective
    from dssl.objectives.dino_config import DINOOptions
    from dssl.registry import COMMON_METADATA, KIND_METADATA, ComponentEntry, ComponentKind, KindRegistry
    from dssl.results import Direction, EvaluationResult, MetricValue, RunInfo, RunResults

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # registering
    "PLUGIN_API_VERSION": "dssl",
    "hookimpl": "dssl",
    "KindRegistry": "dssl.registry",
    "ComponentEntry": "dssl.registry",
    "ComponentKind": "dssl.registry",
    "COMMON_METADATA": "dssl.registry",
    "KIND_METADATA": "dssl.registry",
    # objectives
    "Objective": "dssl.objectives.base",
    "decay_param_groups": "dssl.objectives.base",
    "DINOObjective": "dssl.objectives.dino",
    "DINOOptions": "dssl.objectives.dino_config",
    # augmentations and views
    "Views": "dssl.augment.multicrop",
    "ViewBatch": "dssl.augment.multicrop",
    "collate_views": "dssl.augment.multicrop",
    "MultiCrop": "dssl.augment.multicrop",
    "DRAWS": "dssl.augment.multicrop",
    "DrawColumns": "dssl.augment.multicrop",
    "MultiCropOptions": "dssl.augment.multicrop_config",
    "FloatPair": "dssl.augment.multicrop_config",
    "normalize": "dssl.data.normalize",
    "IMAGENET_MEAN": "dssl.data.normalize",
    "IMAGENET_STD": "dssl.data.normalize",
    # view geometry
    **{
        name: "dssl.augment.geometry"
        for name in (
            "coordinate_map",
            "cross_view_grid",
            "image_to_view",
            "overlap_box",
            "patch_centers",
            "patch_correspondence",
            "points_to_grid",
            "roi_align",
            "roi_sampling_grid",
            "view_to_image",
            "view_to_view",
        )
    },
    # backbones
    "TokenOutput": "dssl.backbones.tokens",
    "Backbone": "dssl.backbones.tokens",
    "ViTBackbone": "dssl.backbones.vit",
    "build_vit": "dssl.backbones.vit",
    "ViTOptions": "dssl.backbones.vit_config",
    # building blocks
    "EMATeacher": "dssl.layers.ema",
    "momentum_schedule": "dssl.layers.ema",
    "MLP": "dssl.layers.heads",
    "DINOHead": "dssl.layers.heads",
    "trunc_normal_init": "dssl.layers.heads",
    "Center": "dssl.layers.centering",
    "distributed_mean": "dssl.layers.centering",
    "set_drop_path_rate": "dssl.layers.drop_path",
    "forward_views": "dssl.layers.multicrop_forward",
    "schedule_value": "dssl.layers.schedules",
    "schedule_scalar": "dssl.layers.schedules",
    "cosine_schedule": "dssl.layers.schedules",
    "linear_warmup_then_constant": "dssl.layers.schedules",
    "sinkhorn_knopp": "dssl.layers.sinkhorn",
    "sinkhorn_match": "dssl.layers.sinkhorn",
    "koleo_loss": "dssl.layers.koleo",
    # datasets
    "DenseDataset": "dssl.data.protocol",
    "DatasetItem": "dssl.data.protocol",
    "DatasetFactory": "dssl.data.protocol",
    # evaluators
    "Evaluator": "dssl.evaluators.base",
    "DenseEvaluator": "dssl.evaluators.base",
    "ImageEvaluator": "dssl.evaluators.base",
    "EvaluationInputs": "dssl.evaluators.base",
    "Measurement": "dssl.evaluators.base",
    "FeatureFn": "dssl.evaluators.base",
    "ImageFeatureFn": "dssl.evaluators.base",
    "ProgressFn": "dssl.evaluators.base",
    "dataset_info": "dssl.evaluators.base",
    "paired_info": "dssl.evaluators.base",
    "mean_std": "dssl.evaluators.base",
    "DatasetInfo": "dssl.evaluators.extraction",
    "DenseCache": "dssl.evaluators.extraction",
    "DenseEvalOptions": "dssl.evaluators.common_config",
    "ImageEvalOptions": "dssl.evaluators.common_config",
    "ConfusionMatrix": "dssl.evaluators.confusion",
    "miou": "dssl.evaluators.confusion",
    "pixel_accuracy": "dssl.evaluators.confusion",
    "hungarian_match": "dssl.evaluators.confusion",
    "many_to_one_match": "dssl.evaluators.confusion",
    "apply_mapping": "dssl.evaluators.confusion",
    # results and lifecycle hooks
    "EvaluationResult": "dssl.results",
    "MetricValue": "dssl.results",
    "Direction": "dssl.results",
    "RunInfo": "dssl.results",
    "RunResults": "dssl.results",
    # errors
    "ConfigError": "dssl.errors",
    "PluginError": "dssl.errors",
}

__all__ = [
    "COMMON_METADATA",
    "DRAWS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KIND_METADATA",
    "MLP",
    "PLUGIN_API_VERSION",
    "Backbone",
    "Center",
    "ComponentEntry",
    "ComponentKind",
    "ConfigError",
    "ConfusionMatrix",
    "DINOHead",
    "DINOObjective",
    "DINOOptions",
    "DatasetFactory",
    "DatasetInfo",
    "DatasetItem",
    "DenseCache",
    "DenseDataset",
    "DenseEvalOptions",
    "DenseEvaluator",
    "Direction",
    "DrawColumns",
    "EMATeacher",
    "EvaluationInputs",
    "EvaluationResult",
    "Evaluator",
    "FeatureFn",
    "FloatPair",
    "ImageEvalOptions",
    "ImageEvaluator",
    "ImageFeatureFn",
    "KindRegistry",
    "Measurement",
    "MetricValue",
    "MultiCrop",
    "MultiCropOptions",
    "Objective",
    "PluginError",
    "ProgressFn",
    "RunInfo",
    "RunResults",
    "TokenOutput",
    "ViTBackbone",
    "ViTOptions",
    "ViewBatch",
    "Views",
    "apply_mapping",
    "build_vit",
    "collate_views",
    "coordinate_map",
    "cosine_schedule",
    "cross_view_grid",
    "dataset_info",
    "decay_param_groups",
    "distributed_mean",
    "forward_views",
    "hookimpl",
    "hungarian_match",
    "image_to_view",
    "koleo_loss",
    "linear_warmup_then_constant",
    "many_to_one_match",
    "mean_std",
    "miou",
    "momentum_schedule",
    "normalize",
    "overlap_box",
    "paired_info",
    "patch_centers",
    "patch_correspondence",
    "pixel_accuracy",
    "points_to_grid",
    "roi_align",
    "roi_sampling_grid",
    "schedule_scalar",
    "schedule_value",
    "set_drop_path_rate",
    "sinkhorn_knopp",
    "sinkhorn_match",
    "trunc_normal_init",
    "view_to_image",
    "view_to_view",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dssl.plugin' has no attribute {name!r} (the plugin API is dssl.plugin.__all__)")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
