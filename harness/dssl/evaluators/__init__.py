"""Dense evaluators: consumers of frozen patch features that return versioned, comparable metrics.

Contract: an evaluator never sees a model. It receives a feature function (normalised images
``(B, 3, H, W)`` -> frozen patch features ``(B, h, w, D)``), a train and a val dataset of
``{"image", "mask"}`` items (with ``num_classes``, ``ignore_index``, ``class_names`` attributes) and
returns a :class:`~dssl.results.EvaluationResult` tagged with ``protocol@protocol_version`` and every
setting that moves its numbers.

Modules:
    confusion: streaming confusion matrix, mIoU, pixel accuracy, Hungarian / many-to-one matching.
    linear_seg: linear probe on cached features (``linear_seg@1``); options in ``linear_seg_config``.
    kmeans_seg: k-means + Hungarian (``kmeans_seg@1``); options in ``kmeans_seg_config``.
    linear_seg_neco: the linear probe with NeCo/Leopart's defaults (``linear_seg_neco@1``).
    overcluster: k-means with K > #classes, many-to-one precision matching (``overcluster@2``).
    overcluster_neco: NeCo's ``eval_overcluster`` with faiss, an optional extra (``overcluster_neco@1``).
    hummingbird: dense k-NN label transfer from a memory bank (``hummingbird@2``).
    knn, linear_cls: image-level classification (``knn@1``, ``linear_cls@1``; ``feature_kind = "image"``).
    concentration, dse: diagnostics (``concentration@1``, ``dse@2``), marked ``settings["diagnostic"] = True``.

Importing this package is light: options models import pydantic only, and the evaluators (torch,
scikit-learn) load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dssl.evaluators.kmeans_seg_config import KMeansSegOptions
from dssl.evaluators.linear_seg_config import LinearSegOptions

if TYPE_CHECKING:
    from dssl.evaluators.concentration import ConcentrationEvaluator
    from dssl.evaluators.dse import DSEEvaluator
    from dssl.evaluators.hummingbird import HummingbirdEvaluator
    from dssl.evaluators.kmeans_seg import KMeansSegEvaluator
    from dssl.evaluators.knn import KNNEvaluator
    from dssl.evaluators.linear_cls import LinearClsEvaluator
    from dssl.evaluators.linear_seg import LinearSegEvaluator
    from dssl.evaluators.linear_seg_neco import LinearSegNecoEvaluator
    from dssl.evaluators.overcluster import OverclusterEvaluator
    from dssl.evaluators.overcluster_neco import OverclusterNecoEvaluator

_LAZY = {
    "LinearSegEvaluator": "dssl.evaluators.linear_seg",
    "KMeansSegEvaluator": "dssl.evaluators.kmeans_seg",
    "LinearSegNecoEvaluator": "dssl.evaluators.linear_seg_neco",
    "OverclusterEvaluator": "dssl.evaluators.overcluster",
    "OverclusterNecoEvaluator": "dssl.evaluators.overcluster_neco",
    "HummingbirdEvaluator": "dssl.evaluators.hummingbird",
    "KNNEvaluator": "dssl.evaluators.knn",
    "LinearClsEvaluator": "dssl.evaluators.linear_cls",
    "ConcentrationEvaluator": "dssl.evaluators.concentration",
    "DSEEvaluator": "dssl.evaluators.dse",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ConcentrationEvaluator",
    "DSEEvaluator",
    "HummingbirdEvaluator",
    "KMeansSegEvaluator",
    "KMeansSegOptions",
    "KNNEvaluator",
    "LinearClsEvaluator",
    "LinearSegEvaluator",
    "LinearSegNecoEvaluator",
    "LinearSegOptions",
    "OverclusterEvaluator",
    "OverclusterNecoEvaluator",
]
