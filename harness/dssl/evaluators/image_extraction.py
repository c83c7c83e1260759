"""Image-level feature extraction shared by the classification evaluators (kNN, linear).

One pass over a dataset through the image-feature function ``(B, 3, H, W) -> (B, D)``; features and the
integer ``label`` of every item are cached on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dssl.data.normalize import normalize
from dssl.engine.preemption import preemption_safe_worker_init
from dssl.errors import ConfigError
from dssl.evaluators.extraction import ProgressFn, as_hw

#: Normalised images ``(B, 3, H, W)`` -> frozen image features ``(B, D)``.
ImageFeatureFn = Callable[[Tensor], Tensor]


def num_classes_of(dataset: Dataset, dataset_name: str) -> int:
    """The dataset's ``num_classes`` (the label space of the image-level ``label``)."""
    num_classes = getattr(dataset, "num_classes", None)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"dataset '{dataset_name}' has no positive integer attribute 'num_classes'")
    return num_classes


class _Collate:
    """Resize (if asked) and stack images; read the integer ``label`` of every item."""

    def __init__(self, input_hw: tuple[int, int] | None, dataset_name: str) -> None:
        self.input_hw = input_hw
        self.dataset_name = dataset_name

    def __call__(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for item in items:
            if "label" not in item:
                raise ConfigError(
                    f"dataset '{self.dataset_name}' gives no image-level 'label' (keys: {sorted(item)}); "
                    "classification evaluators (knn, linear_cls) need one int label per item"
                )
            image = item["image"].float()
            if self.input_hw is not None and tuple(image.shape[1:]) != self.input_hw:
                image = F.interpolate(
                    image[None], size=self.input_hw, mode="bilinear", align_corners=False, antialias=True
                )[0]
            images.append(image)
            labels.append(int(item["label"]))
        sizes = {tuple(im.shape[1:]) for im in images}
        if len(sizes) > 1:
            raise ConfigError(f"images of different sizes {sorted(sizes)} in one batch; set 'input_size'")
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def extract_image_features(
    features: ImageFeatureFn,
    dataset: Dataset,
    *,
    dataset_name: str,
    num_classes: int,
    input_size: int | Sequence[int] | None,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
    progress: ProgressFn | None = None,
    stage: str = "features",
) -> tuple[Tensor, Tensor]:
    """Run the image-feature function once over a dataset.

    Returns:
        ``(features, labels)``: ``(N, D)`` float32 CPU features and ``(N,)`` int64 labels in ``[0, C)``.

    Raises:
        ConfigError: If an item has no ``"label"`` (naming the dataset) or a label is out of range.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ConfigError(f"{stage}: dataset '{dataset_name}' is empty")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_Collate(as_hw(input_size), dataset_name),
        worker_init_fn=preemption_safe_worker_init(num_workers),
        generator=torch.Generator().manual_seed(0),
    )
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    done = 0
    for images, batch_labels in loader:
        with torch.inference_mode():
            out = features(normalize(images.to(device)))
            if out.ndim != 2 or out.shape[0] != images.shape[0]:
                raise ValueError(f"{stage}: the image-feature function must return (B, D), got {tuple(out.shape)}")
            feats.append(out.to("cpu", torch.float32))
        labels.append(batch_labels)
        done += images.shape[0]
        if progress is not None:
            progress(stage, done, n)
    all_labels = torch.cat(labels)
    if int(all_labels.min()) < 0 or int(all_labels.max()) >= num_classes:
        raise ConfigError(f"{stage}: dataset '{dataset_name}' has labels outside [0, {num_classes})")
    return torch.cat(feats), all_labels
