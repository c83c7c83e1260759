"""The guide dataset: procedural stripe textures with per-pixel labels, no download (an example to replace).

A dataset entry names a factory ``build(options, *, split, data_root)``; the dataset it returns has
``num_classes``, ``ignore_index`` and ``class_names``, and its items are ``{"image": (3, H, W) float32 in [0, 1],
"mask": (H, W) int64, "label": int}`` (see ``dssl.plugin.DenseDataset``). A dataset read from files takes its
folder from ``data_root`` (``--data-root``) and registers ``requires_data=True`` with a ``test_fixture``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dssl_guide.config import GuideDatasetOptions

CLASS_NAMES = ("plain", "horizontal stripes", "vertical stripes")
IGNORE_INDEX = 255


class GuideDataset(Dataset):
    """Images of a plain background with one rectangle of horizontal and one of vertical stripes, each region of
    its own random colour; image ``i`` of a split depends only on ``(seed, split, i)``.

    Args:
        options: The validated :class:`GuideDatasetOptions`.
        split: ``"train"`` or ``"val"``.
    """

    num_classes = len(CLASS_NAMES)
    ignore_index = IGNORE_INDEX
    class_names = CLASS_NAMES

    def __init__(self, options: GuideDatasetOptions, split: str) -> None:
        self.options = options
        self.split = split

    def __len__(self) -> int:
        return self.options.num_train if self.split == "train" else self.options.num_val

    def __getitem__(self, index: int) -> dict[str, object]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        size = self.options.size
        stream = 0 if self.split == "train" else 1
        generator = torch.Generator().manual_seed(self.options.seed * 2_000_003 + stream * 1_000_003 + index)
        mask = torch.zeros(size, size, dtype=torch.int64)
        for label in (1, 2):
            h, w = (int(v) for v in torch.randint(size // 4, size // 2 + 1, (2,), generator=generator))
            y0, x0 = (int(v) for v in torch.randint(0, size - max(h, w) + 1, (2,), generator=generator))
            mask[y0 : y0 + h, x0 : x0 + w] = label
        period = float(torch.randint(4, 9, (), generator=generator))
        rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        waves = torch.stack([torch.zeros(size, size), rows.float(), cols.float()]) * (2 * math.pi / period)
        texture = 0.5 + 0.5 * torch.sin(waves).gather(0, mask[None])[0]  # (H, W): each class's own pattern
        texture = torch.where(mask == 0, torch.ones_like(texture), texture)
        colours = torch.rand(self.num_classes, 3, generator=generator)
        image = (colours[mask].permute(2, 0, 1) * texture).clamp(0.0, 1.0)
        label = int(torch.bincount(mask.flatten(), minlength=self.num_classes).argmax())
        return {"image": image.float(), "mask": mask, "label": label}


def build_dataset(options: GuideDatasetOptions, *, split: str, data_root: Path | None = None) -> GuideDataset:
    """The dataset factory the registry names: the ``split`` of the dataset (``data_root`` is not needed)."""
    return GuideDataset(options, split)
