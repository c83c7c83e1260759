"""The NeCo/Leopart linear protocol: a LinearSegEvaluator with NeCo's defaults under its own protocol id."""

from __future__ import annotations

import pytest
from dssl.evaluators.linear_seg import LinearSegEvaluator
from dssl.evaluators.linear_seg_neco import LinearSegNecoEvaluator
from dssl.evaluators.linear_seg_neco_config import LinearSegNecoOptions
from seg_synthetic import BlockDataset, class_features

pytestmark = pytest.mark.usefixtures("torch_optim_warm")


def test_defaults_are_neco() -> None:
    o = LinearSegNecoOptions()
    assert (o.input_size, o.mask_size, o.optimizer, o.lr, o.momentum, o.weight_decay) == (
        448,
        100,
        "sgd",
        0.01,
        0.9,
        1e-4,
    )
    assert (o.epochs, o.schedule, o.step_epochs, o.step_gamma, o.batch_size, o.absent_classes) == (
        25,
        "step",
        20,
        0.1,
        128,
        "zero",
    )
    assert issubclass(LinearSegNecoEvaluator, LinearSegEvaluator)  # reused, not copied


def test_runs_with_small_overrides_and_records_protocol(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    opts = LinearSegNecoOptions(
        input_size=32, mask_size=8, epochs=15, lr=0.5, step_epochs=10, batch_size=4, batchnorm=True
    )
    result = LinearSegNecoEvaluator(opts).evaluate(
        features=class_features(4), train=train_ds, val=val_ds, dataset_name="blocks"
    )
    assert result.protocol_id == "linear_seg_neco@1" and result.evaluator == "linear_seg_neco"
    assert result.metrics["miou"].value > 90.0
    s = result.settings
    assert (s["optimizer"], s["schedule"], s["absent_classes"], s["mask_size"], s["head"]) == (
        "sgd",
        "step",
        "zero",
        [8, 8],
        "batchnorm+conv1x1",
    )


def test_best_epoch_selection_is_an_option_that_picks_the_best_val_epoch(
    train_ds: BlockDataset, val_ds: BlockDataset
) -> None:
    # A constant learning rate: the head after e epochs does not depend on the total number of epochs,
    # so separate runs of 1..E epochs give every epoch's val mIoU independently of the selection code.
    base = {"input_size": 16, "mask_size": 4, "lr": 0.3, "batch_size": 4, "schedule": "constant"}
    fn = class_features(4, noise=2.5)
    per_epoch = [
        LinearSegNecoEvaluator(LinearSegNecoOptions(epochs=e, **base))
        .evaluate(features=fn, train=train_ds, val=val_ds, dataset_name="b")
        .metrics["miou"]
        .value
        for e in range(1, 6)
    ]
    assert LinearSegNecoOptions().select_best_epoch is False  # the default scores the last epoch
    selected = LinearSegNecoEvaluator(LinearSegNecoOptions(epochs=5, select_best_epoch=True, **base)).evaluate(
        features=fn, train=train_ds, val=val_ds, dataset_name="b"
    )
    assert selected.metrics["miou"].value == pytest.approx(max(per_epoch))
    assert selected.settings["epoch_mious"] == pytest.approx(per_epoch)
    assert selected.settings["best_epoch"] == 1 + per_epoch.index(max(per_epoch))
    assert len(set(per_epoch)) > 1  # the case discriminates: the epochs differ
