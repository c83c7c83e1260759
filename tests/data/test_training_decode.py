"""The training loader's 8-bit decode of file datasets: same pixels as the evaluation decode, same bad-file errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dssl.augment.multicrop import MultiCrop
from dssl.augment.multicrop_config import MultiCropOptions
from dssl.data import fixtures
from dssl.data.files import load_rgb, load_rgb_uint8
from dssl.data.imagefolder import build_imagefolder
from dssl.data.imagefolder_config import ImageFolderOptions
from dssl.data.voc import build_voc2012
from dssl.data.voc_config import VOCOptions
from dssl.engine.loader import ViewDataset
from dssl.errors import BadImageError
from PIL import Image
from test_bad_images import write_odd_images


def _photo(path: Path, seed: int, size: tuple[int, int] = (60, 44)) -> np.ndarray:
    """A smooth colour image with some texture saved as a quality-90 JPEG; returns its pixels as written."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(small).resize(size, Image.BICUBIC), dtype=np.int16)
    pixels = np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return pixels


def test_every_mode_decodes_to_the_pixels_of_load_rgb_and_bad_files_name_themselves(tmp_path: Path) -> None:
    _photo(tmp_path / "photo.jpg", 0)
    for name, expected in {**write_odd_images(tmp_path), "photo.jpg": ()}.items():
        if expected is None:
            with pytest.raises(BadImageError, match=f"cannot read image {tmp_path / name}: "):
                load_rgb_uint8(tmp_path / name)
            continue
        decoded = load_rgb_uint8(tmp_path / name)
        reference = torch.from_numpy(np.array(load_rgb(tmp_path / name))).permute(2, 0, 1)
        assert decoded.dtype == torch.uint8 and torch.equal(decoded, reference), name
        assert decoded[None].is_contiguous(memory_format=torch.channels_last), name  # the 8-bit resize's layout


def test_resize_policy_applies_to_the_uint8_decode(tmp_path: Path) -> None:
    _photo(tmp_path / "a.jpg", 1)
    for mode in ("stretch", "short_side_crop"):
        decoded = load_rgb_uint8(tmp_path / "a.jpg", 32, mode)
        assert decoded.shape == (3, 32, 32), mode


def test_file_datasets_give_their_item_image_in_8_bits(tmp_path: Path) -> None:
    root = fixtures.write_imagefolder(tmp_path / "a")
    folder = build_imagefolder(ImageFolderOptions(), split="train", data_root=root)
    voc_root = fixtures.write_voc2012(tmp_path / "b")
    voc = build_voc2012(VOCOptions(), split="train", data_root=voc_root)
    for dataset in (folder, voc):
        for i in range(len(dataset)):
            as_float = dataset[i]["image"]
            as_uint8 = dataset.image_uint8(i)
            assert as_uint8.dtype == torch.uint8 and as_uint8.shape == as_float.shape
            assert torch.equal(as_uint8.float() / 255, as_float)


class _Augmentation:
    """Records the dtype it is given; ``accepts_uint8`` as set."""

    def __init__(self, accepts_uint8: bool) -> None:
        self.accepts_uint8 = accepts_uint8
        self.seen: list[torch.dtype] = []

    def __call__(self, image: torch.Tensor, generator: Any = None) -> torch.Tensor:
        self.seen.append(image.dtype)
        return image


def test_loader_reads_uint8_only_for_augmentations_that_take_it(tmp_path: Path) -> None:
    root = fixtures.write_imagefolder(tmp_path)
    dataset = build_imagefolder(ImageFolderOptions(), split="train", data_root=root)
    for accepts, dtype in ((True, torch.uint8), (False, torch.float32)):
        augmentation = _Augmentation(accepts)
        ViewDataset(dataset, augmentation, seed=0)[(1, 0)]
        assert augmentation.seen == [dtype]
    # MultiCrop takes it: the views of a file dataset come from the 8-bit image, with the float item's geometry.
    multicrop = MultiCrop(MultiCropOptions(global_size=16, local_size=8, n_local=2))
    assert multicrop.accepts_uint8
    views = ViewDataset(dataset, multicrop, seed=0)[(1, 0)]
    reference = multicrop(dataset[1]["image"], generator=torch.Generator().manual_seed(_draw_seed(0, 0)))
    assert torch.equal(views.boxes, reference.boxes) and torch.equal(views.flips, reference.flips)


def _draw_seed(seed: int, draw: int) -> int:
    from dssl.engine.seeding import derive_seed

    return derive_seed(seed, 1, draw)
