"""Stratified random sampling (SRS) of patch positions and UDI's sampling maps (``udi_augmentation.py``).

**SRS** (``DataAugmentation._sampling_mask``): a ``g x g`` patch grid is tiled by ``n x n`` windows of
``w x w`` patches (``n = g // w``; the tiled ``n w`` sub-grid sits at one of the four corners, chosen
uniformly), and one position is drawn uniformly inside every window: ``n²`` samples (14x14 with w = 3: 16;
6x6 with w = 2: 9). A grid smaller than the window gets a single window covering it.

**Sampling maps** (``DataAugmentation._create_map``): the sampled positions of a *source* view are projected
to the original image and then into a *target* view. ``src`` selects the sampled patches of the source view
(one-hot rows), ``tgt`` holds the **bilinear** weights of the same image point on the target view's patch grid,
and ``valid`` is false where the point falls outside the target crop (its ``tgt`` row is zero). Positions are
patch centres in dssl's geometry convention (:mod:`dssl.augment.geometry`), flips included.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> pos = srs_positions((14, 14), 3, batch=2, generator=g)
    >>> pos.shape
    torch.Size([2, 16])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from dssl.plugin import image_to_view, patch_centers, view_to_image
from torch import Tensor

__all__ = ["SamplingMaps", "bilinear_weights", "sampling_maps", "srs_positions", "srs_window_count"]


def srs_window_count(grid: tuple[int, int], window: int) -> tuple[int, int, int, int]:
    """``(n_h, n_w, w_h, w_w)``: windows per side and the (clamped) window size on each side."""
    h, w = grid
    wh, ww = min(window, h), min(window, w)
    return max(1, h // wh), max(1, w // ww), wh, ww


def srs_positions(grid: tuple[int, int], window: int, *, batch: int, generator: torch.Generator | None) -> Tensor:
    """One random patch per SRS window, per image.

    Args:
        grid: ``(h, w)`` patch grid of the view.
        window: Window side ``w`` (clamped to the grid).
        batch: Number of images ``B`` (each gets its own corner and draws).
        generator: Source of randomness.

    Returns:
        ``(B, S)`` long, row-major flat indices into the ``h * w`` grid; ``S = n_h * n_w``, ordered by window.
    """
    h, w = grid
    n_h, n_w, w_h, w_w = srs_window_count(grid, window)
    corner = torch.randint(0, 4, (batch,), generator=generator)
    pick = torch.randint(0, w_h * w_w, (batch, n_h * n_w), generator=generator)
    # Corner 0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right (the official p-quartile order).
    off_y = torch.where(corner >= 2, h - n_h * w_h, 0)[:, None]
    off_x = torch.where(corner % 2 == 1, w - n_w * w_w, 0)[:, None]
    win = torch.arange(n_h * n_w)
    row = off_y + (win // n_w) * w_h + pick // w_w
    col = off_x + (win % n_w) * w_w + pick % w_w
    return row * w + col


def bilinear_weights(points: Tensor, grid: tuple[int, int]) -> Tensor:
    """Bilinear interpolation weights of view points on a patch grid (patch-centre convention, border clamp).

    Args:
        points: ``(*, S, 2)`` view coordinates ``(u, v)`` in ``[0, 1]``.
        grid: ``(h, w)``.

    Returns:
        ``(*, S, h * w)`` weights, each row summing to one.
    """
    h, w = grid
    x = (points[..., 0] * w - 0.5).clamp(0, w - 1)
    y = (points[..., 1] * h - 0.5).clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    fx, fy = x - x0, y - y0
    out = points.new_zeros(*points.shape[:-1], h * w)
    for yy, xx, weight in (
        (y0, x0, (1 - fy) * (1 - fx)),
        (y0, x1, (1 - fy) * fx),
        (y1, x0, fy * (1 - fx)),
        (y1, x1, fy * fx),
    ):
        out.scatter_add_(-1, (yy * w + xx).long().unsqueeze(-1), weight.unsqueeze(-1))
    return out


@dataclass
class SamplingMaps:
    """Maps of ``S`` sampled positions from a source view to a target view.

    Attributes:
        src: ``(B, S, N_src)`` one-hot rows selecting the sampled patches of the source view.
        tgt: ``(B, S, N_tgt)`` bilinear weights of the same image points on the target grid; zero rows where
            invalid.
        valid: ``(B, S)`` bool, the point lies inside the target crop.
        points: ``(B, S, 2)`` image coordinates of the samples (for tests and plots).
    """

    src: Tensor
    tgt: Tensor
    valid: Tensor
    points: Tensor


def sampling_maps(
    positions: Tensor,
    src_grid: tuple[int, int],
    box_src: Tensor,
    flip_src: Tensor,
    box_tgt: Tensor,
    flip_tgt: Tensor,
    tgt_grid: tuple[int, int],
) -> SamplingMaps:
    """UDI's ``_create_map``: source one-hot maps, target bilinear maps and validity of SRS samples.

    Args:
        positions: ``(B, S)`` flat indices into the source grid (from :func:`srs_positions`).
        src_grid: ``(h, w)`` of the source view's patch grid.
        box_src: ``(B, 4)`` source crop boxes (image coordinates).
        flip_src: ``(B,)`` source flips.
        box_tgt: ``(B, 4)`` target crop boxes.
        flip_tgt: ``(B,)`` target flips.
        tgt_grid: ``(h, w)`` of the target view's patch grid.

    Returns:
        :class:`SamplingMaps`.
    """
    n_src = src_grid[0] * src_grid[1]
    centers = patch_centers(*src_grid, device=box_src.device, dtype=box_src.dtype)
    uv_src = centers[positions]  # (B, S, 2)
    points = view_to_image(uv_src, box_src, flip_src)
    uv_tgt = image_to_view(points, box_tgt, flip_tgt)
    # Strictly inside, like the official in_mask (a point on the crop border is dropped).
    valid = ((uv_tgt > 0.0) & (uv_tgt < 1.0)).all(dim=-1)
    src = torch.nn.functional.one_hot(positions, n_src).to(box_src.dtype)
    tgt = bilinear_weights(uv_tgt.clamp(0.0, 1.0), tgt_grid) * valid.unsqueeze(-1).to(box_src.dtype)
    return SamplingMaps(src=src, tgt=tgt, valid=valid, points=points)
