"""The evaluator base classes: every built-in evaluator is one, and the base does the shared parts."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from dssl.host import get_host
from dssl.plugin import (
    ConfigError,
    DenseEvalOptions,
    DenseEvaluator,
    EvaluationInputs,
    EvaluationResult,
    Evaluator,
    ImageEvaluator,
    Measurement,
    MetricValue,
    dataset_info,
    paired_info,
)
from dssl.testing.conformance import TinySegmentation


def _patch_means(images: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(images, 8).permute(0, 2, 3, 1)


class MeanNorm(DenseEvaluator[DenseEvalOptions]):
    """The smallest dense evaluator: the mean norm of the val patch features."""

    name: ClassVar[str] = "mean_norm"
    protocol: ClassVar[str] = "mean_norm"
    protocol_version: ClassVar[int] = 3
    options_model: ClassVar[type[DenseEvalOptions]] = DenseEvalOptions
    seen: ClassVar[list[EvaluationInputs]] = []

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        self.seen.append(inputs)
        cache = self.extract(inputs, "val", info=dataset_info(inputs.val, "val"), limit=5)
        norm = float(cache.features.float().norm(dim=-1).mean())
        return {"norm": MetricValue(value=norm)}, {"images": len(cache.features), **self.feature_settings(cache)}


def test_every_built_in_evaluator_uses_the_base_class():
    for entry in get_host().registry.entries("evaluator"):
        if entry.distribution != "dssl-bench":
            continue
        cls = entry.load()
        assert issubclass(cls, Evaluator), entry.name
        assert cls.name == entry.name and cls.protocol == entry.metadata["protocol"]
        assert issubclass(cls, ImageEvaluator if cls.feature_kind == "image" else DenseEvaluator), entry.name
        assert "measure" in vars(cls) or any(
            "measure" in vars(base) for base in cls.__mro__[1:-1] if base is not Evaluator
        )
        assert "evaluate" not in vars(cls), f"{entry.name} overrides evaluate instead of implementing measure"


def test_the_base_fills_in_defaults_identity_timing_and_extraction():
    evaluator = MeanNorm()
    assert evaluator.options == DenseEvalOptions()
    result = evaluator.evaluate(
        features=_patch_means, train=TinySegmentation(0), val=TinySegmentation(1), dataset_name="tiny"
    )
    assert isinstance(result, EvaluationResult)
    assert (result.evaluator, result.protocol_id, result.dataset) == ("mean_norm", "mean_norm@3", "tiny")
    assert result.seconds is not None and result.seconds >= 0
    assert result.settings["images"] == 5  # limit
    assert result.settings["feature_grid"] == [4, 4] and result.settings["input_size"] == [32, 32]
    assert "diagnostic" not in result.settings
    (inputs,) = MeanNorm.seen
    assert inputs.dataset_name == "tiny" and inputs.device == "cpu" and inputs.progress is None


def test_a_diagnostic_says_so_in_its_settings():
    class Diagnostic(MeanNorm):
        diagnostic: ClassVar[bool] = True

    result = Diagnostic().evaluate(features=_patch_means, train=TinySegmentation(0), val=TinySegmentation(1),
                                   dataset_name="tiny")  # fmt: skip
    assert result.settings["diagnostic"] is True


def test_paired_info_refuses_splits_with_other_classes():
    val = TinySegmentation(1)
    val.num_classes = 4
    inputs = EvaluationInputs(_patch_means, TinySegmentation(0), val, "tiny", "cpu", None)
    with pytest.raises(ConfigError, match="train and val datasets disagree: num_classes 3 vs 4"):
        paired_info(inputs)
