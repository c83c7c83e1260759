"""What every file-backed dataset shares: locating its folder, decoding lazily, resizing, clear errors.

A missing or malformed dataset raises :class:`~dssl.errors.ConfigError` (exit code 2) whose message
says what was expected where and how to point the harness at the data. An image file that cannot be
decoded (empty, truncated, not an image) raises :class:`~dssl.errors.BadImageError` naming it; the
training loader may replace it with another image instead (``dataset.bad_images``, see
:mod:`dssl.engine.loader`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dssl.errors import BadImageError, ConfigError

if TYPE_CHECKING:
    from dssl.data.files_config import FileDatasetOptions

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - PIL comes with torchvision
        raise ConfigError("reading image files needs Pillow (pip install pillow)") from exc
    return Image


def dataset_root(name: str, options: FileDatasetOptions, data_root: Path | str | None, standard: str) -> Path:
    """The dataset folder: ``options.root`` (relative to ``data_root`` if relative) or ``data_root/standard``.

    Raises:
        ConfigError: neither is set, or the folder does not exist.
    """
    hint = "set --data-root (or $DSSL_DATA_ROOT) or dataset.options.root"
    if options.root is not None:
        root = Path(options.root).expanduser()
        if not root.is_absolute() and data_root is not None:
            root = Path(data_root) / root
    elif data_root is not None:
        root = Path(data_root).expanduser() / standard
    else:
        raise ConfigError(f"{name}: no data folder: {hint} (expected the dataset under <data_root>/{standard})")
    if not root.is_dir():
        raise ConfigError(f"{name}: expected the dataset folder {root} (<data_root>/{standard}); {hint}")
    return root


def require_dir(name: str, path: Path, what: str, layout: str) -> Path:
    """``path`` if it is a folder, else a ConfigError saying what should be there."""
    if not path.is_dir():
        raise ConfigError(
            f"{name}: expected {path} with {what} (see the {layout} layout); set --data-root or dataset.options.root"
        )
    return path


def list_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def read_lines(name: str, path: Path, layout: str) -> list[str]:
    """Non-empty stripped lines of a split file."""
    if not path.is_file():
        raise ConfigError(f"{name}: expected the split file {path} (see the {layout} layout)")
    lines = [line.strip() for line in path.read_text().splitlines()]
    ids = [line.split()[0] for line in lines if line]
    if not ids:
        raise ConfigError(f"{name}: the split file {path} lists no images")
    return ids


def truncate(items: list[Any], max_images: int | None) -> list[Any]:
    """``max_images`` items evenly spaced over the (sorted) list, so a quick run still sees every part of it."""
    if max_images is None or max_images >= len(items):
        return items
    return [items[i * len(items) // max_images] for i in range(max_images)]


#: PIL modes of 16-bit (or wider integer) greyscale images, e.g. a 16-bit PNG.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_rgb(path: Path) -> Any:
    """The image at ``path`` as an 8-bit PIL RGB image, decoded completely now.

    Greyscale and palette images are expanded to RGB, RGBA/LA drop their alpha channel (the colour
    values stay, as torchvision's loader does), CMYK is converted, and 16-bit greyscale is scaled to
    8 bits (PIL's own conversion would clip every value above 255 to white).

    Raises:
        BadImageError: the file is missing, empty, truncated or not an image PIL can decode.
    """
    image_mod = _pil()
    try:
        with image_mod.open(path) as image:
            image.load()  # decode every byte now: a truncated file fails here, not halfway through a batch
            return _to_rgb(image, image_mod)
    except (OSError, ValueError, SyntaxError, image_mod.DecompressionBombError) as exc:
        raise BadImageError(path, str(exc) or type(exc).__name__) from None


def _to_rgb(image: Any, image_mod: Any) -> Any:
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_GREY_MODES:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return image_mod.fromarray((wide >> 8).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette image with transparency goes straight to RGB
    return image.convert("RGB")


def load_label_png(path: Path, name: str) -> np.ndarray:
    """An integer label map ``(H, W)`` from a single-channel or palette PNG (palette indices are the labels).

    Raises:
        ConfigError: the file is missing, unreadable or has colour channels (an RGB rendering of a mask
            is not a label map).
    """
    image_mod = _pil()
    if not path.is_file():
        raise ConfigError(f"{name}: expected the mask {path}")
    try:
        with image_mod.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16", "1"):
                raise ConfigError(
                    f"{name}: mask {path} has mode {image.mode!r}; expected a single-channel or palette PNG "
                    "whose values are class ids"
                )
            return np.array(image, dtype=np.int64)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read mask {path}: {exc}") from exc


def _target_size(
    width: int, height: int, size: int, mode: str
) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """``(new_w, new_h)`` and the crop box after resizing (``None`` for no crop)."""
    if mode == "stretch":
        return (size, size), None
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return (new_w, new_h), (left, top, left + size, top + size)


def resize_image(image: Any, size: int | None, mode: str) -> Any:
    """Bilinear resize of a PIL image by the dataset resize policy (see ``files_config``)."""
    if size is None:
        return image
    image_mod = _pil()
    new_size, box = _target_size(image.width, image.height, size, mode)
    out = image.resize(new_size, image_mod.BILINEAR)
    return out.crop(box) if box is not None else out


def resize_mask(mask: np.ndarray, size: int | None, mode: str) -> np.ndarray:
    """Nearest-neighbour resize of an integer ``(H, W)`` mask by the same policy as :func:`resize_image`."""
    if size is None:
        return mask
    height, width = mask.shape
    (new_w, new_h), box = _target_size(width, height, size, mode)
    # Pixel-centre nearest sampling, the PIL/torchvision NEAREST convention.
    rows = np.minimum(((np.arange(new_h) + 0.5) * height / new_h).astype(np.intp), height - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * width / new_w).astype(np.intp), width - 1)
    out = mask[rows[:, None], cols[None, :]]
    if box is not None:
        left, top, right, bottom = box
        out = out[top:bottom, left:right]
    return np.ascontiguousarray(out)


def image_tensor(image: Any) -> torch.Tensor:
    """PIL RGB image -> ``float32 (3, H, W)`` in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0).contiguous()


def load_rgb_uint8(path: Path, size: int | None = None, resize: str = "stretch") -> torch.Tensor:
    """The image at ``path`` as ``uint8 (3, H, W)`` RGB with channels-last strides, never converted to float.

    The training loader's decode (the file datasets' ``image_uint8``): augmentations that accept uint8 crop and
    resize in 8 bits and convert only their views to float, so the full-size float image of
    :func:`image_tensor` (as costly as the decode itself) is never built. The pixels are exactly those of
    :func:`load_rgb` (same decoder, modes, resize policy and :class:`~dssl.errors.BadImageError`). The
    ``(H, W, 3)`` array is only permuted, which leaves channels-last strides: the layout of torch's vectorised
    8-bit resize. (``torchvision.io.decode_jpeg`` decodes a JPEG about a third faster, but torchvision 0.29
    deprecates its image decoders; ``benchmarks/perf/input_pipeline.py`` measures both.)

    Args:
        path: Image file.
        size: The dataset's resize side (``None``: native size).
        resize: Its resize mode (see ``files_config``).

    Raises:
        BadImageError: the file is missing, empty, truncated or not an image.
    """
    image = resize_image(load_rgb(path), size, resize)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


class SegmentationFiles(Dataset[dict[str, torch.Tensor]]):
    """Image/mask file pairs decoded per item; the subclass-free core of every dense file dataset.

    Args:
        name: Registry name, for messages.
        pairs: ``(image path, mask source)`` per item; the source is whatever ``read_mask`` takes.
        read_mask: ``source -> int64 (H, W)`` class ids (already mapped to the dataset's classes).
        num_classes: Number of classes ``C``.
        ignore_index: Label value to ignore.
        class_names: One name per class.
        size: Resize side or ``None`` (see ``files_config``).
        resize: Resize mode.

    Items: ``image`` ``float32 (3, H, W)`` in [0, 1]; ``mask`` ``int64 (H, W)``; ``index`` ``int64 ()``.
    """

    def __init__(
        self,
        name: str,
        pairs: Sequence[tuple[Path, Any]],
        read_mask: Callable[[Any], np.ndarray],
        *,
        num_classes: int,
        ignore_index: int,
        class_names: Sequence[str],
        size: int | None,
        resize: str,
    ) -> None:
        if not pairs:
            raise ConfigError(f"{name}: the split has no images")
        if len(class_names) != num_classes:
            raise ConfigError(f"{name}: {len(class_names)} class names for {num_classes} classes")
        self.name = name
        self.pairs = list(pairs)
        self.read_mask = read_mask
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = tuple(class_names)
        self.size = size
        self.resize = resize

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} images, size={self.size})"

    def image_uint8(self, index: int) -> torch.Tensor:
        """The image of item ``index`` as ``uint8 (3, H, W)`` (see :func:`load_rgb_uint8`), without its mask.

        What the training loader reads: training needs no mask, and the augmentation crops in 8 bits.
        """
        return load_rgb_uint8(self.pairs[index][0], self.size, self.resize)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path, source = self.pairs[index]
        image = load_rgb(image_path)
        mask = self.read_mask(source)
        if mask.shape != (image.height, image.width):
            raise ConfigError(
                f"{self.name}: mask of {image_path.name} is {mask.shape[1]}x{mask.shape[0]}, "
                f"image is {image.width}x{image.height}"
            )
        image = resize_image(image, self.size, self.resize)
        mask = resize_mask(mask, self.size, self.resize)
        return {
            "image": image_tensor(image),
            "mask": torch.from_numpy(mask.astype(np.int64, copy=False)),
            "index": torch.tensor(index % len(self), dtype=torch.int64),
        }


def map_labels(values: np.ndarray, lut: np.ndarray, fill: int) -> np.ndarray:
    """Map label values through a lookup table; values outside the table get ``fill``."""
    out = np.full(values.shape, fill, dtype=np.int64)
    inside = (values >= 0) & (values < len(lut))
    out[inside] = lut[values[inside]]
    return out
