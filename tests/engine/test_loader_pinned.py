"""The training loader with ``pin_memory`` and worker processes yields the batches of the single-process loader."""

from __future__ import annotations

import warnings
from itertools import islice

import torch
from dssl.augment.multicrop import MultiCrop, collate_views
from dssl.augment.multicrop_config import MultiCropOptions
from dssl.engine.loader import training_loader
from torch.utils.data import Dataset


class _Images(Dataset):
    """Random images, fixed per index."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(index))}


def _batches(*, num_workers: int, pin_memory: bool, count: int = 4) -> list:
    augmentation = MultiCrop(MultiCropOptions(global_size=32, local_size=16, n_local=2))
    loader = training_loader(
        _Images(),
        augmentation,
        batch_size=2,
        seed=7,
        num_workers=num_workers,
        collate=collate_views,
        pin_memory=pin_memory,
    )
    return list(islice(iter(loader), count))


def test_pinned_loader_with_workers_gives_the_batches_of_one_process() -> None:
    reference = _batches(num_workers=0, pin_memory=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pinned = _batches(num_workers=2, pin_memory=True)
    for ours, theirs in zip(pinned, reference, strict=True):
        assert len(ours.crops) == len(theirs.crops) == 4
        for a, b in zip(ours.crops, theirs.crops, strict=True):
            assert torch.equal(a, b)
        assert torch.equal(ours.boxes, theirs.boxes)
        assert torch.equal(ours.flips, theirs.flips)
    if torch.accelerator.is_available():
        # The batch type's pin_memory() ran in the loader's pinning thread.
        assert all(c.is_pinned() for b in pinned for c in b.crops)
    else:
        # A CPU-only machine: PyTorch turns pinning off with a warning; the batches went through unpinned.
        assert any("pin_memory" in str(w.message) for w in caught), [str(w.message) for w in caught]
        assert not any(c.is_pinned() for b in pinned for c in b.crops)
