"""``feature_store: disk`` keeps the feature cache in a memory-mapped temporary file with identical results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from dssl.errors import ConfigError
from dssl.evaluators.extraction import DatasetInfo, allocate_features, extract_dense
from dssl.host import get_host
from seg_synthetic import BlockDataset, class_features

#: The dense evaluators, with overrides that keep the tiny evaluations fast.
OPTIONS = {
    "linear_seg": {"epochs": 2},
    "kmeans_seg": {"seeds": [0], "n_init": 1},
    "overcluster": {"seeds": [0], "n_init": 1, "ks": [6, 8]},
}


def _mapped_feature_files() -> list[str]:
    """Deleted ``dssl-features-*`` files still mapped into this process (Linux ``/proc/self/maps``)."""
    maps = Path("/proc/self/maps").read_text()
    return [line for line in maps.splitlines() if "dssl-features-" in line]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_disk_store_is_a_mapped_file_removed_from_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    features = allocate_features((3, 4, 5, 8), torch.float32, "disk")
    features[:] = 1.5
    assert features.shape == (3, 4, 5, 8) and float(features.sum()) == 1.5 * 3 * 4 * 5 * 8
    mapped = _mapped_feature_files()
    assert mapped and all("(deleted)" in line for line in mapped)
    assert os.listdir(tmp_path) == []  # unlinked at once: nothing left behind, even after a crash


def test_disk_store_extracts_the_same_cache(val_ds: BlockDataset) -> None:
    info = DatasetInfo(val_ds.num_classes, val_ds.ignore_index, None)
    fn = class_features(4, noise=0.5)
    args = {"input_size": None, "mask_size": None, "batch_size": 3, "num_workers": 0, "device": "cpu"}
    memory = extract_dense(fn, val_ds, info=info, dtype=torch.float32, **args)
    disk = extract_dense(fn, val_ds, info=info, dtype=torch.float32, store="disk", **args)
    assert torch.equal(memory.features, disk.features) and torch.equal(memory.masks, disk.masks)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_disk_store_gives_identical_results(name: str, train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    entry = get_host().get("evaluator", name)
    results = []
    for store in ("memory", "disk"):
        options = entry.options_model().model_validate({**OPTIONS[name], "feature_store": store})
        result = entry.load()(options).evaluate(
            features=class_features(4, noise=0.5), train=train_ds, val=val_ds, dataset_name="blocks", device="cpu"
        )
        results.append({k: (v.value, v.std) for k, v in result.metrics.items()})
    assert results[0] == results[1]


def test_disk_store_without_space_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(ConfigError, match=r"feature_store: disk needs .* GiB .*TMPDIR"):
        allocate_features((1024, 1024), torch.float32, "disk")


def test_unknown_store_is_refused() -> None:
    entry = get_host().get("evaluator", "linear_seg")
    with pytest.raises(ValueError, match="feature_store"):
        entry.options_model().model_validate({"feature_store": "swap"})
