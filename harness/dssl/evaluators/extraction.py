"""Feature extraction shared by the dense evaluators: one pass over a dataset, cached in memory.

The evaluators never see a model: they call a :data:`FeatureFn` on normalised images and keep the
resulting frozen patch features, plus the masks at scoring resolution, in two CPU tensors.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dssl.data.normalize import normalize
from dssl.engine.preemption import preemption_safe_worker_init
from dssl.errors import ConfigError

#: Normalised images ``(B, 3, H, W)`` -> frozen patch features ``(B, h, w, D)``.
FeatureFn = Callable[[Tensor], Tensor]
#: ``progress(stage, done, total)``; called after each unit of work of a stage.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DatasetInfo:
    """The label facts an evaluator needs from a dataset."""

    num_classes: int
    ignore_index: int | None
    class_names: tuple[str, ...] | None


@dataclass
class DenseCache:
    """Features and masks of one dataset split.

    Attributes:
        features: ``(N, h, w, D)`` CPU features in the cache dtype.
        masks: ``(N, Hm, Wm)`` CPU masks at scoring resolution, in the smallest integer dtype that holds
            the labels and the ignore index.
        input_hw: Image size given to the feature function.
    """

    features: Tensor
    masks: Tensor
    input_hw: tuple[int, int]

    @property
    def grid_hw(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])

    @property
    def mask_hw(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def dim(self) -> int:
        return int(self.features.shape[3])


def dataset_info(dataset: Dataset, role: str) -> DatasetInfo:
    """Read ``num_classes``, ``ignore_index`` and ``class_names`` from a dataset, with a clear error."""
    if getattr(dataset, "has_masks", True) is False:
        raise ConfigError(
            f"{role} dataset {type(dataset).__name__} has no masks (classification or unlabelled images); dense "
            "evaluators need a segmentation dataset: set eval_dataset (e.g. voc2012) or use --eval knn / linear_cls"
        )
    num_classes = getattr(dataset, "num_classes", None)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(
            f"{role} dataset {type(dataset).__name__} has no positive integer attribute 'num_classes' "
            f"(got {num_classes!r}); dense evaluators need it"
        )
    ignore_index = getattr(dataset, "ignore_index", None)
    names = getattr(dataset, "class_names", None)
    return DatasetInfo(num_classes, ignore_index, tuple(names) if names is not None else None)


def as_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``448 -> (448, 448)``; ``(h, w)`` unchanged; ``None`` unchanged."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def mask_dtype(num_classes: int, ignore_index: int | None) -> torch.dtype:
    """Smallest integer dtype holding labels ``[0, C)`` and the ignore index (masks dominate memory)."""
    lo = min(0, ignore_index if ignore_index is not None else 0)
    hi = max(num_classes - 1, ignore_index if ignore_index is not None else 0)
    if lo >= 0 and hi <= 255:
        return torch.uint8
    if lo >= -(2**15) and hi < 2**15:
        return torch.int16
    return torch.int32


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``(..., H, W)`` integer masks (torchvision ``NEAREST`` semantics)."""
    if tuple(mask.shape[-2:]) == size:
        return mask
    lead = mask.shape[:-2]
    # float64 keeps any int32 label exact through interpolate.
    flat = mask.reshape(-1, 1, *mask.shape[-2:]).to(torch.float64)
    out = F.interpolate(flat, size=size, mode="nearest")
    return out.reshape(*lead, *size).to(mask.dtype)


class _Collate:
    """Resize (if asked) and stack the ``image`` and ``mask`` of dataset items; other keys are dropped.

    A class rather than a closure so that ``DataLoader`` workers can pickle it under any start method.
    """

    def __init__(self, input_hw: tuple[int, int] | None) -> None:
        self.input_hw = input_hw

    def __call__(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        images, masks = [], []
        for item in items:
            image, mask = item["image"], item["mask"]
            if image.ndim != 3 or image.shape[0] != 3 or mask.shape != image.shape[1:]:
                raise ValueError(
                    f"dataset item: expected image (3, H, W) and mask (H, W), got {tuple(image.shape)} and "
                    f"{tuple(mask.shape)}"
                )
            if self.input_hw is not None and tuple(image.shape[1:]) != self.input_hw:
                # Antialiased bilinear approximates the PIL resize of the reference pipelines.
                image = F.interpolate(
                    image[None].float(), size=self.input_hw, mode="bilinear", align_corners=False, antialias=True
                )[0]
                mask = resize_mask(mask, self.input_hw)
            images.append(image.float())
            masks.append(mask)
        sizes = {tuple(im.shape[1:]) for im in images}
        if len(sizes) > 1:
            raise ConfigError(
                f"images of different sizes {sorted(sizes)} in one batch; set the evaluator option "
                "'input_size' to resize them"
            )
        return torch.stack(images), torch.stack(masks)


#: Default memory budget of :func:`feature_cache` (features + masks of all kept entries).
DEFAULT_CACHE_BYTES = 2 * 1024**3


class FeatureCache:
    """Memoised :func:`extract_dense` results, bounded by a memory budget (oldest entries evicted first).

    An entry is keyed by the feature function and dataset *objects* (their identities; the cache holds
    references to both, so an identity cannot be reused while the entry lives), the dataset's ``split``
    attribute, the input and mask sizes, the feature dtype, the batch size (batching can change the last
    bits of the features), the device and the label facts. Evaluators get a copy of the cached tensors,
    so an evaluator that modifies its features in place cannot change what the next one sees.

    Args:
        max_bytes: Budget for the features and masks of all entries; a result larger than the budget is
            not kept.

    Attributes:
        hits: Calls answered from the cache.
        misses: Calls that ran the feature function.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[DenseCache, int, tuple[Any, ...]]] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the kept entries."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> DenseCache | None:
        """A copy of the entry of ``key``, or ``None``."""
        found = self._entries.get(key)
        if found is None:
            return None
        cache = found[0]
        return DenseCache(features=cache.features.clone(), masks=cache.masks.clone(), input_hw=cache.input_hw)

    def put(self, key: Hashable, cache: DenseCache, keep_alive: tuple[Any, ...]) -> None:
        """Keep a copy of ``cache`` under ``key`` (with references to ``keep_alive``), evicting the oldest.

        Args:
            key: The entry's key.
            cache: The extraction result; a copy is kept.
            keep_alive: Objects whose identities the key holds (feature function, dataset).
        """
        size = cache.features.nbytes + cache.masks.nbytes
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._bytes -= self._entries.pop(key)[1]
        while self._entries and self._bytes + size > self.max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1][1]
        kept = DenseCache(features=cache.features.clone(), masks=cache.masks.clone(), input_hw=cache.input_hw)
        self._entries[key] = (kept, size, keep_alive)
        self._bytes += size

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._bytes = 0


_ACTIVE_CACHE: ContextVar[FeatureCache | None] = ContextVar("dssl_feature_cache", default=None)


@contextlib.contextmanager
def feature_cache(max_bytes: int = DEFAULT_CACHE_BYTES) -> Iterator[FeatureCache]:
    """Share :func:`extract_dense` results between the evaluators run inside the block.

    Inside the block, a call of :func:`extract_dense` with the same feature function, dataset, split,
    sizes, dtype and batch size as an earlier one returns the earlier features and masks instead of
    running the feature function again (results are identical: the same computation is not repeated).
    The cache is emptied when the block ends.

    Args:
        max_bytes: Memory budget of the cache (default 2 GiB); oldest entries are evicted beyond it.

    Yields:
        The :class:`FeatureCache` (for its ``hits`` and ``misses``).

    Example:
        >>> with feature_cache():                                              # doctest: +SKIP
        ...     results = [e.evaluate(features=fn, train=tr, val=va, dataset_name="voc", device=d) for e in evs]
    """
    cache = FeatureCache(max_bytes)
    token = _ACTIVE_CACHE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE_CACHE.reset(token)
        cache.clear()


def extract_dense(
    features: FeatureFn,
    dataset: Dataset,
    *,
    info: DatasetInfo,
    input_size: int | Sequence[int] | None,
    mask_size: int | Sequence[int] | None,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
    dtype: torch.dtype,
    progress: ProgressFn | None = None,
    stage: str = "features",
    store: Literal["memory", "disk"] = "memory",
) -> DenseCache:
    """Run the feature function once over a dataset and cache features and masks on the CPU.

    Images are resized to ``input_size`` (bilinear), normalised with the ImageNet statistics and passed
    through ``features`` under ``torch.inference_mode``. Masks are resized nearest to ``input_size``,
    then nearest to ``mask_size`` (two steps, as NeCo's 448 -> 100).

    Args:
        features: The frozen feature function.
        dataset: Items ``{"image": (3, H, W) float in [0, 1], "mask": (H, W) int64}``.
        info: Label facts of the dataset (labels are validated against them).
        input_size: See ``DenseEvalOptions.input_size``.
        mask_size: See ``DenseEvalOptions.mask_size``.
        batch_size: Images per feature call.
        num_workers: DataLoader workers.
        device: Device the images are moved to before the feature call.
        dtype: Cache dtype of the features.
        progress: Optional ``progress(stage, done_images, total_images)``.
        stage: Stage name passed to ``progress``.
        store: ``"memory"``, or ``"disk"``: the features in a memory-mapped temporary file
            (:func:`allocate_features`).

    Returns:
        The :class:`DenseCache` of the dataset; inside :func:`feature_cache`, possibly a copy of an earlier
        identical extraction.
    """
    shared = _ACTIVE_CACHE.get()
    key: Hashable = None
    if shared is not None:
        key = (
            id(features),
            id(dataset),
            getattr(dataset, "split", None),
            as_hw(input_size),
            as_hw(mask_size),
            dtype,
            batch_size,
            str(torch.device(device)),
            info,
        )
        found = shared.get(key)
        if found is not None:
            shared.hits += 1
            if progress is not None:
                n = len(found.features)
                progress(stage, n, n)
            return found
        shared.misses += 1

    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ConfigError(f"{stage}: the dataset is empty")
    input_hw, mask_hw = as_hw(input_size), as_hw(mask_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_Collate(input_hw),
        worker_init_fn=preemption_safe_worker_init(num_workers),
        # Its own generator: a DataLoader otherwise draws its worker base seed from the global RNG,
        # which would make an evaluation shift the caller's random stream.
        generator=torch.Generator().manual_seed(0),
    )
    feats: Tensor | None = None
    masks: Tensor | None = None
    seen_hw: tuple[int, int] | None = None
    done = 0
    for images, batch_masks in loader:
        b = images.shape[0]
        hw = (int(images.shape[2]), int(images.shape[3]))
        if seen_hw is None:
            seen_hw = hw
        elif hw != seen_hw:
            raise ConfigError(f"{stage}: image sizes differ ({seen_hw} vs {hw}); set 'input_size' to resize them")
        batch_masks = batch_masks.to(torch.int64)
        _check_labels(batch_masks, info, stage)
        if mask_hw is not None:
            batch_masks = resize_mask(batch_masks, mask_hw)
        with torch.inference_mode():
            out = features(normalize(images.to(device)))
            if out.ndim != 4 or out.shape[0] != b:
                raise ValueError(
                    f"{stage}: the feature function must return (B, h, w, D) with B={b}, got {tuple(out.shape)}"
                )
            out = out.to("cpu", dtype)
        if feats is None or masks is None:
            feats = allocate_features((n, *out.shape[1:]), dtype, store)
            masks = torch.empty((n, *batch_masks.shape[1:]), dtype=mask_dtype(info.num_classes, info.ignore_index))
        elif out.shape[1:] != feats.shape[1:]:
            raise ValueError(f"{stage}: feature shape changed from {tuple(feats.shape[1:])} to {tuple(out.shape[1:])}")
        feats[done : done + b] = out
        masks[done : done + b] = batch_masks.to(masks.dtype)
        done += b
        if progress is not None:
            progress(stage, done, n)
    assert feats is not None and masks is not None and seen_hw is not None
    result = DenseCache(features=feats, masks=masks, input_hw=seen_hw)
    if shared is not None:
        shared.put(key, result, keep_alive=(features, dataset))
    return result


def allocate_features(shape: Sequence[int], dtype: torch.dtype, store: Literal["memory", "disk"]) -> Tensor:
    """An uninitialised feature tensor of ``shape``, in RAM or backed by a temporary file.

    ``"disk"`` maps a file of the tensor's size, created under ``$TMPDIR`` and unlinked at once (the mapping
    keeps it until the tensor is freed, so nothing is left behind, even after a crash): its pages are file
    pages that the OS writes out and drops under memory pressure, where a RAM tensor would need swap.

    Args:
        shape: Tensor shape, e.g. ``(N, h, w, D)``.
        dtype: Element dtype.
        store: ``"memory"`` or ``"disk"``.

    Raises:
        ConfigError: ``"disk"`` and the temporary folder lacks the space.
    """
    if store == "memory":
        return torch.empty(tuple(shape), dtype=dtype)
    count = math.prod(shape)
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    fd, path = tempfile.mkstemp(prefix="dssl-features-", suffix=".bin")
    try:
        try:
            # Reserves the blocks, so that a full disk fails here, not with SIGBUS on a later write.
            os.posix_fallocate(fd, 0, max(nbytes, 1))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:  # a file system without fallocate: a sparse file of that size
                os.ftruncate(fd, max(nbytes, 1))
            else:
                raise ConfigError(
                    f"feature_store: disk needs {nbytes / 2**30:.2f} GiB in {tempfile.gettempdir()} ({exc.strerror}); "
                    "free space there or point TMPDIR elsewhere"
                ) from exc
        features = torch.from_file(path, shared=True, size=count, dtype=dtype)
    finally:
        os.close(fd)
        os.unlink(path)
    return features.view(tuple(shape))


def _check_labels(masks: Tensor, info: DatasetInfo, stage: str) -> None:
    """Fail early on a label that is neither a class nor the ignore index (a dataset/config mismatch)."""
    bad = (masks < 0) | (masks >= info.num_classes)
    if info.ignore_index is not None:
        bad &= masks != info.ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in masks[bad].unique()[:10]})
        raise ConfigError(
            f"{stage}: mask labels {values} are outside [0, {info.num_classes}) and differ from "
            f"ignore_index={info.ignore_index}"
        )


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[Tensor]:
    """Index batches over ``range(n)``; shuffled with ``generator`` when given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch_size))
