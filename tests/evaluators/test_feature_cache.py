"""Evaluators of one run share their dense features (``feature_cache``) without changing any result."""

from __future__ import annotations

import pytest
import torch
from dssl.evaluators.extraction import DatasetInfo, DenseCache, FeatureCache, extract_dense, feature_cache
from dssl.host import get_host
from seg_synthetic import BlockDataset, class_features

#: Small option overrides that keep the tiny evaluations fast (K <= the 8 x 16 val patches).
OPTIONS = {
    "kmeans_seg": {"seeds": [0], "n_init": 1},
    "overcluster": {"seeds": [0], "n_init": 1, "ks": [6, 8]},
    "concentration": {},
}


def _counting(fn):
    calls = {"images": 0}

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        calls["images"] += x.shape[0]
        return fn(x)

    return wrapped, calls


def _evaluate_all(features, train, val) -> dict[str, dict[str, tuple[float, float | None]]]:
    host = get_host()
    out = {}
    for name, overrides in OPTIONS.items():
        entry = host.get("evaluator", name)
        evaluator = entry.load()(entry.options_model().model_validate(overrides))
        result = evaluator.evaluate(features=features, train=train, val=val, dataset_name="blocks", device="cpu")
        out[name] = {k: (v.value, v.std) for k, v in result.metrics.items()}
    return out


def test_results_identical_with_and_without_cache(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    plain_fn, plain_calls = _counting(class_features(4, noise=0.5))
    plain = _evaluate_all(plain_fn, train_ds, val_ds)
    cached_fn, cached_calls = _counting(class_features(4, noise=0.5))
    with feature_cache() as cache:
        cached = _evaluate_all(cached_fn, train_ds, val_ds)
    assert cached == plain
    # Three evaluators each extract the val split: computed once, then served twice.
    assert plain_calls["images"] == 3 * len(val_ds)
    assert cached_calls["images"] == len(val_ds)
    assert (cache.misses, cache.hits) == (1, 2)
    assert len(cache) == 0  # emptied when the block ends


def _extract(fn, dataset, **kw) -> DenseCache:
    info = DatasetInfo(dataset.num_classes, dataset.ignore_index, None)
    args = {"input_size": None, "mask_size": None, "batch_size": 4, "num_workers": 0, "device": "cpu"}
    return extract_dense(fn, dataset, info=info, dtype=torch.float32, **(args | kw))


def test_key_separates_sizes_dtypes_and_datasets(val_ds: BlockDataset) -> None:
    fn, calls = _counting(class_features(4))
    other = BlockDataset(8, seed=3)
    with feature_cache() as cache:
        first = _extract(fn, val_ds)
        first.features.mul_(0)  # an evaluator modifying its copy must not change the cached entry
        again = _extract(fn, val_ds)
        _extract(fn, val_ds, input_size=32)
        _extract(fn, val_ds, mask_size=8)
        _extract(fn, other)
    assert (cache.hits, cache.misses) == (1, 4)
    assert calls["images"] == 4 * 8
    assert torch.equal(again.features, _extract(fn, val_ds).features)


def test_budget_evicts_oldest_and_skips_too_large() -> None:
    def entry(n: int) -> DenseCache:
        return DenseCache(torch.zeros(n, 1, 1, 1), torch.zeros(n, 1, 1, dtype=torch.uint8), (1, 1))

    cache = FeatureCache(max_bytes=50)
    cache.put("a", entry(4), ())  # 16 + 4 bytes
    cache.put("b", entry(4), ())
    assert len(cache) == 2 and cache.nbytes == 40
    cache.put("c", entry(4), ())  # over budget: "a" goes
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None
    cache.put("d", entry(100), ())  # larger than the whole budget: not kept, nothing evicted
    assert cache.get("d") is None and len(cache) == 2
    with pytest.raises(ValueError):
        FeatureCache(max_bytes=-1)
