"""The dataset contract: what a registered dataset factory builds and what its items hold.

A dataset entry names a factory ``build(options, *, split, data_root) -> dataset``. The engine builds the
training split (``"train"``) for the augmentation and the evaluation dataset's ``"train"`` and ``"val"`` splits
for the evaluators; ``data_root`` is the folder of the real datasets (``--data-root`` or ``$DSSL_DATA_ROOT``),
``None`` when none is configured (a generated dataset ignores it). A dataset read from disk registers
``requires_data=True`` and a ``test_fixture`` that writes a tiny copy in its real format, so that the conformance
suite can build it without the data.

This module is typing only: it imports neither torch nor the datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["DatasetFactory", "DatasetItem", "DenseDataset", "Split"]

#: The splits a factory is asked for.
Split = Literal["train", "val"]


class DatasetItem(TypedDict, total=False):
    """One item of a dataset (``dataset[i]``).

    Attributes:
        image: ``(3, H, W)`` float32 in ``[0, 1]`` (not normalised: augmentations and the evaluators' extraction
            normalise with the ImageNet statistics themselves). Required.
        mask: ``(H, W)`` int64 class ids in ``[0, num_classes)`` or ``ignore_index``; the dense evaluators need it.
        label: The image-level class id (``int``); the image-level evaluators (``knn``, ``linear_cls``) need it.
    """

    image: Tensor
    mask: Tensor
    label: int


@runtime_checkable
class DenseDataset(Protocol):
    """What the engine and the evaluators read from a dataset (a ``torch.utils.data.Dataset`` of items).

    Attributes:
        num_classes: ``C``, the number of class ids of masks and labels.
        ignore_index: The mask value that is no class (losses and metrics skip it), or ``None``.
        class_names: One name per class id.

    A dataset without masks (image classification, unlabelled images) sets ``has_masks = False``, so that the
    dense evaluators refuse it with a clear message; a dataset may set ``split`` (its split's name), which keys
    the evaluators' shared feature cache. A dataset read from image files may add ``image_uint8(i)``, the item's
    image as ``uint8 (3, H, W)`` without its mask, which the training loader reads instead of ``dataset[i]`` when
    the augmentation has ``accepts_uint8`` (the file datasets do; :mod:`dssl.engine.loader`).
    """

    num_classes: int
    ignore_index: int | None
    class_names: Sequence[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> DatasetItem: ...


class DatasetFactory(Protocol):
    """The callable a dataset entry names (``registry.add(name, "package.module:build", ...)``)."""

    def __call__(self, options: Any, *, split: Split, data_root: Path | None) -> DenseDataset:
        """Build one split.

        Args:
            options: The validated options model of the entry (``None`` when it registered none).
            split: ``"train"`` or ``"val"``.
            data_root: Folder of the real datasets, or ``None``.

        Returns:
            The split's dataset.
        """
        ...
