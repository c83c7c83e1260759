"""Image classification from a class-per-folder tree (torchvision ``ImageFolder`` layout), without masks.

Layout (``root`` defaults to ``<data_root>/imagefolder``)::

    <split>/<class name>/<image>.{jpg,jpeg,png,...}     labelled (ImageNet-style)
    <split>/<image>.{jpg,jpeg,png,...}                   unlabelled: a flat folder, e.g. COCO's train2017

Classes are the sorted folder names of the *train* split, so train and val share ids. Items carry
``image``, ``label`` (``int64 ()`` class index; absent for a flat folder) and ``index``, and no
``mask``: the dataset sets ``has_masks = False`` (and ``has_labels``), and dense evaluators must refuse
it with a ConfigError; pair it with a segmentation ``eval_dataset``. A flat folder (pre-training
images only, e.g. ``root: coco, train_split: train2017, val_split: val2017``) has no classes
(``num_classes = 0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import Dataset

from dssl.data.files import (
    IMAGE_SUFFIXES,
    dataset_root,
    image_tensor,
    load_rgb,
    load_rgb_uint8,
    require_dir,
    resize_image,
    truncate,
)
from dssl.data.imagefolder_config import ImageFolderOptions
from dssl.errors import ConfigError

NAME = "imagefolder"
LAYOUT = "ImageFolder (<root>/<split>/<class>/*.jpg, or <root>/<split>/*.jpg unlabelled)"
STANDARD_FOLDER = "imagefolder"


class ImageFolderDataset(Dataset[dict[str, torch.Tensor]]):
    """Images with one class label each, decoded per item.

    Args:
        samples: ``(path, class index)`` per image.
        class_names: Class names in index order.
        size: Resize side or ``None``; resize: resize mode (see ``files_config``).

    Attributes:
        has_masks: ``False``: items have no ``mask``.
        ignore_index: ``-100`` (``torch.nn.CrossEntropyLoss``'s default); no label takes it.
    """

    has_masks: ClassVar[bool] = False
    ignore_index: ClassVar[int] = -100

    def __init__(
        self, samples: list[tuple[Path, int | None]], class_names: tuple[str, ...], *, size: int | None, resize: str
    ) -> None:
        self.samples = samples
        self.has_labels = bool(class_names)
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.size = size
        self.resize = resize

    def __len__(self) -> int:
        return len(self.samples)

    def image_uint8(self, index: int) -> torch.Tensor:
        """The image of item ``index`` as ``uint8 (3, H, W)`` (see :func:`~dssl.data.files.load_rgb_uint8`).

        What the training loader reads: the augmentation crops in 8 bits and converts only its views to float.
        """
        return load_rgb_uint8(self.samples[index][0], self.size, self.resize)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """``image`` ``float32 (3, H, W)`` in [0, 1], ``label`` ``int64 ()``, ``index`` ``int64 ()``."""
        path, label = self.samples[index]
        image = resize_image(load_rgb(path), self.size, self.resize)
        item = {"image": image_tensor(image), "index": torch.tensor(index % len(self), dtype=torch.int64)}
        if label is not None:
            item["label"] = torch.tensor(label, dtype=torch.int64)
        return item


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def build_imagefolder(
    options: ImageFolderOptions, *, split: str, data_root: Path | str | None = None
) -> ImageFolderDataset:
    """Dataset factory: the ``split`` (``"train"`` or ``"val"``) of an ImageFolder tree."""
    root = dataset_root(NAME, options, data_root, STANDARD_FOLDER)
    what = "one sub-folder of images per class (or the images themselves)"
    train_dir = require_dir(NAME, root / options.train_split, what, LAYOUT)
    class_names = tuple(p.name for p in _class_dirs(train_dir))
    split_dir = train_dir if split == "train" else require_dir(NAME, root / options.val_split, what, LAYOUT)
    samples: list[tuple[Path, int | None]] = []
    if class_names:
        index_of = {name: i for i, name in enumerate(class_names)}
        for class_dir in _class_dirs(split_dir):
            if class_dir.name not in index_of:
                raise ConfigError(f"{NAME}: class folder {class_dir} is not a class of the train split {train_dir}")
            samples.extend((p, index_of[class_dir.name]) for p in _image_files(class_dir))
    else:
        samples.extend((p, None) for p in _image_files(split_dir))
    if not samples:
        raise ConfigError(f"{NAME}: expected images in {split_dir} or its class sub-folders (see the {LAYOUT} layout)")
    return ImageFolderDataset(
        truncate(samples, options.max_images), class_names, size=options.size, resize=options.resize
    )
