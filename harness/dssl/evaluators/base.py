"""The evaluator contract and the base classes that carry its boilerplate.

An evaluator never sees a model. The engine builds it from its validated options (``Evaluator(options)``)
and calls :meth:`Evaluator.evaluate` with a **feature function** and the evaluation dataset's train and val
splits::

    result = evaluator.evaluate(features=fn, train=train, val=val, dataset_name="voc2012", device=device,
                                progress=progress)

* ``features``: ImageNet-normalised images ``(B, 3, H, W)`` -> frozen features: ``(B, h, w, D)`` patch
  features for a dense evaluator (``feature_kind = "dense"``, the backbone's ``features``), ``(B, D)`` image
  features for an image-level one (``feature_kind = "image"``, the final ``[CLS]`` token unless the backbone
  defines ``image_features``). The engine calls it under ``torch.inference_mode`` on ``device``, in float32.
  The extraction helpers below normalise the dataset's ``[0, 1]`` images before calling it.
* ``train`` / ``val``: datasets of ``{"image", "mask"[, "label"]}`` items with ``num_classes``,
  ``ignore_index`` and ``class_names`` (see :class:`dssl.data.protocol.DenseDataset`).
* ``progress``: optional ``progress(stage, done, total)`` shown as the evaluator's progress bar.

It returns an :class:`~dssl.results.EvaluationResult`: metrics with their direction, the protocol id and
version, and every resolved setting that changes the numbers.

:class:`Evaluator` does the parts every evaluator repeats (options defaults, timing, the result's identity)
and leaves :meth:`Evaluator.measure` to the subclass; :class:`DenseEvaluator` and :class:`ImageEvaluator` add
the one-pass feature extraction of their options (:class:`~dssl.evaluators.common_config.DenseEvalOptions`,
:class:`~dssl.evaluators.common_config.ImageEvalOptions`).

Example:
    >>> class MeanNorm(DenseEvaluator):
    ...     name = protocol = "mean_norm"
    ...     protocol_version = 1
    ...     options_model = DenseEvalOptions
    ...     def measure(self, inputs):
    ...         cache = self.extract(inputs, "val", info=dataset_info(inputs.val, "val"))
    ...         norm = cache.features.float().norm(dim=-1).mean()
    ...         return {"norm": MetricValue(value=float(norm))}, self.feature_settings(cache)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor
from torch.utils.data import Dataset, Subset

from dssl.errors import ConfigError
from dssl.evaluators.common_config import DenseEvalOptions, ImageEvalOptions
from dssl.evaluators.extraction import (
    DatasetInfo,
    DenseCache,
    FeatureFn,
    ProgressFn,
    as_hw,
    dataset_info,
    extract_dense,
)
from dssl.evaluators.image_extraction import ImageFeatureFn, extract_image_features, num_classes_of
from dssl.results import EvaluationResult, MetricValue

__all__ = [
    "DenseEvaluator",
    "EvaluationInputs",
    "Evaluator",
    "FeatureFn",
    "ImageEvaluator",
    "ImageFeatureFn",
    "Measurement",
    "ProgressFn",
    "dataset_info",
    "mean_std",
    "num_classes_of",
    "paired_info",
]

OptionsT = TypeVar("OptionsT", bound=BaseModel)
DenseOptionsT = TypeVar("DenseOptionsT", bound=DenseEvalOptions)
ImageOptionsT = TypeVar("ImageOptionsT", bound=ImageEvalOptions)

#: What :meth:`Evaluator.measure` returns: metric name -> value with direction, and the settings that
#: changed the numbers.
Measurement = tuple[Mapping[str, MetricValue], Mapping[str, Any]]
Split = Literal["train", "val"]


@dataclass(frozen=True)
class EvaluationInputs:
    """The arguments of :meth:`Evaluator.evaluate`, handed to :meth:`Evaluator.measure` as one object.

    Attributes:
        features: ImageNet-normalised images ``(B, 3, H, W)`` -> frozen features (``(B, h, w, D)`` or ``(B, D)``).
        train: The evaluation dataset's train split.
        val: The split that is scored.
        dataset_name: The evaluation dataset's registered name.
        device: Where the feature calls run.
        progress: Optional ``progress(stage, done, total)``.
    """

    features: FeatureFn
    train: Dataset
    val: Dataset
    dataset_name: str
    device: torch.device | str
    progress: ProgressFn | None

    def split(self, name: Split) -> Dataset:
        """The ``train`` or ``val`` dataset."""
        return self.train if name == "train" else self.val


class Evaluator(Generic[OptionsT]):
    """Base class of evaluators: options, timing and the identity of the result.

    Subclasses set the class attributes and implement :meth:`measure`.

    Args:
        options: The validated options; ``None`` uses the defaults of :attr:`options_model`.

    Attributes:
        name: The registered name (``--eval NAME``), recorded in the result.
        protocol: The protocol id; numbers of different protocols are never ranked together.
        protocol_version: Bumped whenever a change can move the numbers (registry.yaml ``protocols`` too).
        options_model: The pydantic options model (torch-free, ``extra="forbid"``).
        feature_kind: ``"dense"`` (features ``(B, h, w, D)``) or ``"image"`` (``(B, D)``).
        diagnostic: A diagnostic, not a benchmark score: its settings carry ``diagnostic: True`` and
            leaderboards leave it out of rankings unless asked.
        options: The options in use.
    """

    name: ClassVar[str]
    protocol: ClassVar[str]
    protocol_version: ClassVar[int]
    options_model: ClassVar[type[BaseModel]]
    feature_kind: ClassVar[Literal["dense", "image"]] = "dense"
    diagnostic: ClassVar[bool] = False

    def __init__(self, options: OptionsT | None = None) -> None:
        self.options: OptionsT = options if options is not None else self.options_model()  # type: ignore[assignment]

    def evaluate(
        self,
        *,
        features: FeatureFn,
        train: Dataset,
        val: Dataset,
        dataset_name: str,
        device: torch.device | str = "cpu",
        progress: ProgressFn | None = None,
    ) -> EvaluationResult:
        """Measure the frozen features and return the versioned result (see the module docstring).

        Args:
            features: ImageNet-normalised images ``(B, 3, H, W)`` -> frozen features (see :attr:`feature_kind`).
            train: The evaluation dataset's train split (probes fit on it; transductive protocols ignore it).
            val: The split that is scored.
            dataset_name: The evaluation dataset's registered name, recorded in the result.
            device: Where the feature calls (and the evaluator's own tensors) run.
            progress: Optional ``progress(stage, done, total)``.

        Returns:
            The metrics with this evaluator's name, protocol id and version, settings and wall time.
        """
        started = time.perf_counter()
        metrics, settings = self.measure(EvaluationInputs(features, train, val, dataset_name, device, progress))
        return EvaluationResult(
            evaluator=self.name,
            protocol=self.protocol,
            protocol_version=self.protocol_version,
            dataset=dataset_name,
            metrics=dict(metrics),
            settings={"diagnostic": True, **settings} if self.diagnostic else dict(settings),
            seconds=time.perf_counter() - started,
        )

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """The evaluator's own work on the arguments of :meth:`evaluate`.

        Returns:
            ``(metrics, settings)``: metric name -> :class:`~dssl.results.MetricValue`, and every resolved
            setting that changes the numbers.
        """
        raise NotImplementedError


class DenseEvaluator(Evaluator[DenseOptionsT]):
    """An evaluator of patch features ``(B, h, w, D)`` whose options extend ``DenseEvalOptions``."""

    feature_kind: ClassVar[Literal["dense", "image"]] = "dense"

    @property
    def cache_dtype(self) -> torch.dtype:
        """The storage dtype of extracted features (``feature_dtype`` option)."""
        return torch.float16 if self.options.feature_dtype == "float16" else torch.float32

    def extract(
        self,
        inputs: EvaluationInputs,
        split: Split,
        *,
        info: DatasetInfo,
        dtype: torch.dtype | None = None,
        limit: int | None = None,
    ) -> DenseCache:
        """One pass of the feature function over a split at the options' input and mask sizes (progress stage
        ``features/<split>``; see :func:`~dssl.evaluators.extraction.extract_dense`).

        Args:
            inputs: What :meth:`evaluate` received.
            split: ``"train"`` or ``"val"``.
            info: The split's label facts (:func:`dataset_info`).
            dtype: Storage dtype; default :attr:`cache_dtype`.
            limit: Extract only the first ``limit`` images.

        Returns:
            Features ``(N, h, w, D)`` and masks ``(N, Hm, Wm)`` on the CPU.
        """
        opts = self.options
        dataset = inputs.split(split)
        if limit is not None:
            dataset = Subset(dataset, range(min(limit, len(dataset))))  # type: ignore[arg-type]
        return extract_dense(
            inputs.features,
            dataset,
            info=info,
            input_size=opts.input_size,
            mask_size=opts.mask_size,
            batch_size=opts.feature_batch_size,
            num_workers=opts.num_workers,
            device=inputs.device,
            dtype=dtype if dtype is not None else self.cache_dtype,
            progress=inputs.progress,
            stage=f"features/{split}",
            store=opts.feature_store,
        )

    def feature_settings(self, cache: DenseCache) -> dict[str, Any]:
        """The settings every dense protocol records about its extraction: sizes, grid and width."""
        requested = self.options.input_size
        return {
            "input_size": list(cache.input_hw),
            "requested_input_size": list(as_hw(requested)) if requested is not None else None,
            "mask_size": list(cache.mask_hw),
            "feature_grid": list(cache.grid_hw),
            "feature_dim": cache.dim,
        }


class ImageEvaluator(Evaluator[ImageOptionsT]):
    """An evaluator of image features ``(B, D)`` whose options extend ``ImageEvalOptions``."""

    feature_kind: ClassVar[Literal["dense", "image"]] = "image"

    def extract(self, inputs: EvaluationInputs, split: Split, *, num_classes: int) -> tuple[Tensor, Tensor]:
        """One pass of the image-feature function over a split (progress stage ``features/<split>``; see
        :func:`~dssl.evaluators.image_extraction.extract_image_features`).

        Returns:
            ``(N, D)`` float32 features and ``(N,)`` int64 labels in ``[0, num_classes)``, on the CPU.
        """
        opts = self.options
        return extract_image_features(
            inputs.features,
            inputs.split(split),
            dataset_name=inputs.dataset_name,
            num_classes=num_classes,
            input_size=opts.input_size,
            batch_size=opts.feature_batch_size,
            num_workers=opts.num_workers,
            device=inputs.device,
            progress=inputs.progress,
            stage=f"features/{split}",
        )

    def extract_splits(self, inputs: EvaluationInputs) -> tuple[int, tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Both splits through :meth:`extract`.

        Returns:
            The number of classes of ``train``, then ``(features, labels)`` of ``train`` and of ``val``.
        """
        num_classes = num_classes_of(inputs.train, inputs.dataset_name)
        train = self.extract(inputs, "train", num_classes=num_classes)
        return num_classes, train, self.extract(inputs, "val", num_classes=num_classes)

    def input_size_setting(self) -> list[int] | None:
        """The ``input_size`` setting: ``[h, w]``, or ``None`` for the datasets' native size."""
        size = self.options.input_size
        return list(as_hw(size)) if size is not None else None


def paired_info(inputs: EvaluationInputs) -> DatasetInfo:
    """The train split's label facts, which the val split must share (a probe fitted on one scores the other).

    Raises:
        ConfigError: The splits disagree on ``num_classes`` or ``ignore_index``.
    """
    info = dataset_info(inputs.train, "train")
    val_info = dataset_info(inputs.val, "val")
    if (val_info.num_classes, val_info.ignore_index) != (info.num_classes, info.ignore_index):
        raise ConfigError(
            f"train and val datasets disagree: num_classes {info.num_classes} vs {val_info.num_classes}, "
            f"ignore_index {info.ignore_index} vs {val_info.ignore_index}"
        )
    return info


def mean_std(values: list[float]) -> MetricValue:
    """Mean and sample standard deviation (ddof 1) of repeats, e.g. over seeds; ``std`` is ``None`` for a
    single value (no spread was measured)."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return MetricValue(value=float(arr.mean()), std=std, n=len(arr))
