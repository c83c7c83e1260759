"""The guide evaluator: nearest class centroid of frozen patch features, scored as mIoU (an example to replace).

An evaluator never sees a model: ``evaluate`` receives a feature function (ImageNet-normalised images ``(B, 3, H,
W)`` -> frozen patch features ``(B, h, w, D)``) and the evaluation dataset's splits, and returns an
``EvaluationResult`` with its metrics, their direction, its protocol id and version, and every setting that
changes the numbers. ``dssl.plugin.DenseEvaluator`` does the common parts; this class implements ``measure``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from dssl.plugin import (
    ConfusionMatrix,
    DenseEvaluator,
    EvaluationInputs,
    Measurement,
    MetricValue,
    miou,
    paired_info,
    pixel_accuracy,
)

from dssl_guide.config import GuideEvaluatorOptions


def patch_labels(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` masks -> ``(N, h, w)`` int64: the class at the centre of each patch (nearest sampling)."""
    return F.interpolate(masks[:, None].float(), size=grid, mode="nearest")[:, 0].long()


def class_centroids(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """``(C, D)`` unit-length mean of the unit-length patch features of each class.

    Args:
        features: ``(M, D)`` patch features.
        labels: ``(M,)`` their classes.
        num_classes: ``C``.
        ignore_index: The label of patches that belong to no class (left out).
    """
    keep = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    unit = F.normalize(features[keep].float(), dim=-1)
    sums = torch.zeros(num_classes, features.shape[-1]).index_add_(0, labels[keep], unit)
    return F.normalize(sums, dim=-1)


class GuideEvaluator(DenseEvaluator[GuideEvaluatorOptions]):
    """Label every val patch with the class whose train centroid is most cosine-similar; mIoU at mask resolution.

    Example:
        >>> result = GuideEvaluator().evaluate(features=fn, train=tr, val=va, dataset_name="x")  # doctest: +SKIP
        >>> result.metrics["miou"].value  # doctest: +SKIP
    """

    name: ClassVar[str] = "guide"
    protocol: ClassVar[str] = "guide"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[GuideEvaluatorOptions]] = GuideEvaluatorOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Centroids from the train split, nearest-centroid maps of the val split, mIoU and pixel accuracy."""
        info = paired_info(inputs)  # the val split must have the train split's classes
        train = self.extract(inputs, "train", info=info)
        labels = patch_labels(train.masks, train.grid_hw).reshape(-1)
        centroids = class_centroids(train.features.reshape(-1, train.dim), labels, info.num_classes, info.ignore_index)
        del train
        val = self.extract(inputs, "val", info=info)
        confusion = ConfusionMatrix(info.num_classes, info.num_classes, ignore_index=info.ignore_index)
        for features, masks in zip(val.features.split(64), val.masks.split(64), strict=True):
            nearest = (F.normalize(features.float(), dim=-1) @ centroids.T).argmax(dim=-1)  # (b, h, w)
            upsampled = F.interpolate(nearest[:, None].float(), size=val.mask_hw, mode="nearest")[:, 0].long()
            confusion.update(masks.long(), upsampled)
        metrics = {
            "miou": MetricValue(value=100.0 * miou(confusion.matrix, self.options.absent_classes)[0]),
            "pixel_accuracy": MetricValue(value=100.0 * pixel_accuracy(confusion.matrix)),
        }
        settings = {
            **self.feature_settings(val),
            "num_classes": info.num_classes,
            "ignore_index": info.ignore_index,
            "patch_label": "mask pixel at the patch centre",
            "similarity": "cosine to unit-length class centroids",
            "absent_classes": self.options.absent_classes,
            "val_images": len(val.features),
        }
        return metrics, settings
