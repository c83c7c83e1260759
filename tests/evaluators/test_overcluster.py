"""Overclustering (K > #classes) with many-to-one precision matching."""

from __future__ import annotations

import pytest
import torch
from dssl.data.normalize import normalize
from dssl.evaluators.confusion import apply_mapping, hungarian_match, many_to_one_match, miou
from dssl.evaluators.overcluster import OverclusterEvaluator
from dssl.evaluators.overcluster_config import OverclusterOptions
from pydantic import ValidationError
from seg_synthetic import BlockDataset, class_features, noise_features


def test_clean_features_overclustered_score_100(val_ds: BlockDataset) -> None:
    opts = OverclusterOptions(ks=[6, 10], seeds=[0, 1], n_init=1)
    result = OverclusterEvaluator(opts).evaluate(
        features=class_features(4, dim=8, noise=0.3), train=val_ds, val=val_ds, dataset_name="blocks"
    )
    assert result.protocol_id == "overcluster@2"
    for k in (6, 10):
        m = result.metrics[f"miou_k{k}"]
        # More clusters than classes: each cluster is pure, so many-to-one gives a perfect map.
        assert m.value == pytest.approx(100.0) and m.n == 2
        assert result.metrics[f"pixel_accuracy_k{k}"].value == pytest.approx(100.0)
    s = result.settings
    assert s["ks"] == [6, 10] and s["effective_ks"] == [6, 10] and s["matching"] == "many_to_one"
    assert s["match_score"] == "precision" and s["seeds"] == [0, 1]
    assert (s["standardize"], s["pca_dim"], s["effective_pca_dim"], s["init"]) == (True, 50, 8, "random")


def test_k_capped_at_number_of_patches_and_recorded() -> None:
    val = BlockDataset(2, seed=5)  # 2 images x 16 patches = 32 points
    result = OverclusterEvaluator(OverclusterOptions(ks=[100], seeds=[0], n_init=1)).evaluate(
        features=noise_features(), train=val, val=val, dataset_name="blocks"
    )
    assert result.settings["effective_ks"] == [32] and "miou_k100" in result.metrics
    # One cluster per patch: every cluster is pure at patch resolution, so many-to-one is perfect.
    assert result.metrics["miou_k100"].value == pytest.approx(100.0)


def test_evaluator_equals_manual_pipeline(val_ds: BlockDataset) -> None:
    """The score equals many_to_one_match + apply_mapping + miou on a confusion matrix built by hand."""
    opts = OverclusterOptions(ks=[7], seeds=[3], n_init=1, standardize=False, pca_dim=None)
    ev = OverclusterEvaluator(opts)
    fn = noise_features(dim=4)
    result = ev.evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="blocks")
    feats = fn(normalize(torch.stack([val_ds[i]["image"] for i in range(len(val_ds))])))
    points = ev._preprocess(feats.reshape(-1, 4))
    labels = ev._cluster(points, 7, points.shape[0], 3).reshape(len(val_ds), 4, 4)
    conf = torch.zeros(4, 7, dtype=torch.int64)
    for i in range(len(val_ds)):
        mask = val_ds.masks[i]
        up = torch.from_numpy(labels[i]).repeat_interleave(4, 0).repeat_interleave(4, 1)
        for y in range(16):
            for x in range(16):
                if int(mask[y, x]) != 255:
                    conf[int(mask[y, x]), int(up[y, x])] += 1
    expected = 100.0 * miou(apply_mapping(conf, many_to_one_match(conf)))[0]
    assert result.metrics["miou_k7"].value == pytest.approx(expected)


def _manual_confusion(ds: BlockDataset, labels, k: int) -> torch.Tensor:
    conf = torch.zeros(ds.num_classes, k, dtype=torch.int64)
    for i in range(len(ds)):
        up = torch.from_numpy(labels[i]).repeat_interleave(4, 0).repeat_interleave(4, 1)
        for y in range(16):
            for x in range(16):
                if int(ds.masks[i, y, x]) != 255:
                    conf[int(ds.masks[i, y, x]), int(up[y, x])] += 1
    return conf


def test_k_up_to_the_number_of_classes_is_hungarian_matched(val_ds: BlockDataset) -> None:
    opts = OverclusterOptions(ks=[3, 4, 6], seeds=[1], n_init=1, standardize=False, pca_dim=None)
    ev = OverclusterEvaluator(opts)
    fn = noise_features(dim=4)
    result = ev.evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="blocks")
    assert result.settings["matching_per_k"] == ["hungarian", "hungarian", "many_to_one"]
    feats = fn(normalize(torch.stack([val_ds[i]["image"] for i in range(len(val_ds))])))
    points = ev._preprocess(feats.reshape(-1, 4))
    differs = []
    for k in (3, 4, 6):
        conf = _manual_confusion(val_ds, ev._cluster(points, k, points.shape[0], 1).reshape(-1, 4, 4), k)
        one_to_one = 100.0 * miou(apply_mapping(conf, hungarian_match(conf, unmatched_to=0)))[0]
        many = 100.0 * miou(apply_mapping(conf, many_to_one_match(conf)))[0]
        expected = many if k > 4 else one_to_one
        assert result.metrics[f"miou_k{k}"].value == pytest.approx(expected)
        if k <= 4:
            differs.append(many != pytest.approx(one_to_one))
    assert any(differs)  # many-to-one (overcluster@1) scores some of these clusterings differently


def test_ks_validation() -> None:
    with pytest.raises(ValidationError):
        OverclusterOptions(ks=[10, 10])
    with pytest.raises(ValidationError):
        OverclusterOptions(ks=[])
