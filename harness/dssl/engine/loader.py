"""Training data: dataset images turned into views, with randomness that depends only on the seed.

Each drawn sample gets its own ``torch.Generator`` seeded from ``(seed, draw number)``, so the views of
step ``s`` are identical whatever the number of DataLoader workers or the order they run in. The order of
the samples is a permutation seeded from ``(seed, epoch)``, so a resumed run starts the sampler at its
draw count (``start_step * batch_size``) and sees exactly the batches of an uninterrupted run.

An image that cannot be decoded (:class:`~dssl.errors.BadImageError`) either stops training naming the
file (``bad_images="error"``) or is replaced by the next readable image of the dataset in index order
(``"skip"``, the default for training sets), so that one truncated file neither kills a long run nor
changes which batches the other images land in; every skipped file is appended to a log file that the
run reports (count and names).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dssl.engine.preemption import preemption_safe_worker_init
from dssl.engine.seeding import derive_seed
from dssl.errors import BadImageError, ConfigError

BadImagePolicy = Literal["skip", "error"]


class EndlessSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset index, draw number)`` forever: a fresh seeded permutation per epoch.

    Args:
        length: Number of samples in the dataset.
        seed: Run seed; epoch ``e`` is ordered by a permutation seeded from ``(seed, e)``.
        start: Draws to skip (a resumed run passes ``steps done * batch size``); the draws that follow
            are exactly those an uninterrupted sampler would yield from that point.
        rank: This process's rank in a data-parallel run.
        world_size: Number of processes; each yields its ``global_batch / world_size`` slice of every
            global batch of the single-process stream.
        global_batch: Images per optimisation step over all ranks.
    """

    def __init__(
        self, length: int, seed: int, start: int = 0, *, rank: int = 0, world_size: int = 1, global_batch: int = 1
    ) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if not 0 <= rank < world_size or global_batch % world_size:
            raise ValueError(f"rank {rank} of {world_size} with a global batch of {global_batch}")
        self.length = length
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self.global_batch = global_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.length)
        draw = self.start
        share = self.global_batch // self.world_size
        while True:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            for index in torch.randperm(self.length, generator=generator).tolist()[offset:]:
                # Data parallel: every rank walks the same stream and keeps its slice of each global batch.
                if self.world_size == 1 or (draw % self.global_batch) // share == self.rank:
                    yield index, draw
                draw += 1
            epoch += 1
            offset = 0


class ViewDataset(Dataset):
    """Applies an augmentation to the images of a dataset, seeded per draw.

    Args:
        dataset: Images: ``dataset.image_uint8(i)`` where the dataset has it (file datasets: ``uint8 (3, H, W)``,
            without decoding masks) and the augmentation sets ``accepts_uint8``, else ``dataset[i]["image"]``.
        augmentation: Turns one image into views; called with a per-draw ``generator``.
        seed: Run seed.
        bad_images: ``"error"``: an unreadable image raises :class:`~dssl.errors.BadImageError`; ``"skip"``: it
            is replaced by the next readable image in index order (the draw's views stay seeded by the draw).
        bad_images_log: With ``"skip"``, each skipped file is appended here as ``path<TAB>reason`` (every
            DataLoader worker appends to the same file; :func:`read_bad_images` reads it back). ``None``: the
            files are only kept in :attr:`skipped` (this process).
    """

    def __init__(
        self,
        dataset: Dataset,
        augmentation: Callable[..., Any],
        seed: int,
        *,
        bad_images: BadImagePolicy = "error",
        bad_images_log: Path | None = None,
    ) -> None:
        self.dataset = dataset
        self.augmentation = augmentation
        self.seed = seed
        self.bad_images = bad_images
        self.bad_images_log = bad_images_log
        self.skipped: list[BadImageError] = []
        self._bad_indices: set[int] = set()
        # File datasets decode straight to uint8 for training (no mask, no full-size float image) when the
        # augmentation says it crops uint8 images (``accepts_uint8``); otherwise, and for generated datasets,
        # which have no such reader, the float item as before.
        reader = getattr(dataset, "image_uint8", None)
        self._read_uint8: Callable[[int], Any] | None = (
            reader if getattr(augmentation, "accepts_uint8", False) else None
        )

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, draw = key
        generator = torch.Generator().manual_seed(derive_seed(self.seed, 1, draw))
        return self.augmentation(self._image(index), generator=generator)

    def _image(self, index: int) -> Any:
        length = len(self)
        for offset in range(length):
            candidate = (index + offset) % length
            if candidate in self._bad_indices:
                continue
            try:
                if self._read_uint8 is not None:
                    return self._read_uint8(candidate)
                return self.dataset[candidate]["image"]
            except BadImageError as exc:
                if self.bad_images != "skip":
                    hint = "dataset.bad_images=skip trains on without it"
                    raise BadImageError(exc.path or "?", f"{exc.reason} ({hint})") from None
                self._bad_indices.add(candidate)
                self._record(exc)
        raise ConfigError(f"not one image of the training set can be decoded (e.g. {self.skipped[0]})")

    def _record(self, error: BadImageError) -> None:
        self.skipped.append(error)
        if self.bad_images_log is None:
            return
        line = f"{error.path}\t{' '.join(error.reason.split())}\n".encode()
        # One O_APPEND write per line: lines of several worker processes never interleave.
        fd = os.open(self.bad_images_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_bad_images(log: Path) -> dict[str, str]:
    """The files a training run skipped, in the order first met: path -> reason (empty when none)."""
    if not log.is_file():
        return {}
    found: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        path, _, reason = line.partition("\t")
        if path:
            found.setdefault(path, reason)
    return found


def training_loader(
    dataset: Dataset,
    augmentation: Callable[..., Any],
    *,
    batch_size: int,
    seed: int,
    num_workers: int,
    collate: Callable[[list[Any]], Any],
    pin_memory: bool,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
    bad_images: BadImagePolicy = "error",
    bad_images_log: Path | None = None,
) -> DataLoader:
    """An endless loader of collated view batches.

    Args:
        dataset: Images (``dataset[i]["image"]``).
        augmentation: Turns one image into views; called with a per-draw ``generator``.
        batch_size: Images per batch (incomplete batches never happen: the loader is endless).
        seed: Run seed; fixes the sample order and every view.
        num_workers: DataLoader worker processes.
        collate: Turns a list of views into one batch.
        pin_memory: Pin host memory (CUDA).
        start_step: Batches already consumed (a resumed run); the first batch is the one of this step.
        rank: This process's rank; with ``world_size > 1`` each batch is its ``batch_size / world_size``
            slice of the global batch.
        world_size: Number of data-parallel processes.
        bad_images: What an unreadable image does (see :class:`ViewDataset`).
        bad_images_log: Where skipped files are listed (see :class:`ViewDataset`).
    """
    if len(dataset) < batch_size:  # type: ignore[arg-type]
        raise ConfigError(
            f"the training set has {len(dataset)} images, fewer than the batch size {batch_size}"  # type: ignore[arg-type]
        )
    return DataLoader(
        ViewDataset(dataset, augmentation, seed, bad_images=bad_images, bad_images_log=bad_images_log),
        batch_size=batch_size // world_size,
        sampler=EndlessSampler(  # type: ignore[arg-type]
            len(dataset), seed, start=start_step * batch_size, rank=rank, world_size=world_size, global_batch=batch_size
        ),
        num_workers=num_workers,
        collate_fn=collate,
        worker_init_fn=preemption_safe_worker_init(num_workers),
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
