"""Geometry of multi-crop views: boxes, flips, point mapping, ROI alignment and patch correspondence.

Coordinate convention (every function here, and :class:`dssl.augment.multicrop.Views`):

* **Normalised coordinates**, points stored as ``(x, y)`` in the last dimension (the order
  ``F.grid_sample`` expects): ``x`` grows to the right, ``y`` grows downwards, ``(0, 0)`` is the
  top-left *corner* of the top-left pixel and ``(1, 1)`` the bottom-right corner of the bottom-right
  pixel. Pixel (row ``i``, column ``j``) of an ``H x W`` image covers ``[j/W, (j+1)/W] x [i/H, (i+1)/H]``
  and its centre is ``((j + 0.5)/W, (i + 0.5)/H)``: the pixel-centre convention of
  ``align_corners=False``.
* **Image coordinates** are normalised coordinates of the original (un-cropped) image. A view's
  **box** ``(x0, y0, x1, y1)`` is the region of the original image it was cropped from, in image
  coordinates (integer pixel edges divided by ``W``/``H``).
* **View coordinates** are normalised coordinates of the view's own tensor. Without flip, view point
  ``(u, v)`` shows image point ``(x0 + u (x1 - x0), y0 + v (y1 - y0))``; with a horizontal flip
  (applied *after* cropping) ``u`` is replaced by ``1 - u``. The same holds for any feature map of the
  view whose cells tile it evenly (a ViT patch grid): cell ``(i, j)`` of an ``h x w`` grid is the view
  region ``[j/w, (j+1)/w] x [i/h, (i+1)/h]``.
* **grid_sample coordinates** are ``2 p - 1`` of view coordinates ``p``; always sample with
  ``align_corners=False``.

Shapes: ``*`` is any number of leading batch dimensions (e.g. ``(B,)`` or ``(B, V)``); boxes are
``(*, 4)``, flips ``(*,)`` bool, point sets ``(*, N, 2)``. Patch grids are flattened row-major
(index ``i * w + j``), matching ``features.flatten(2)`` of a ``(B, D, h, w)`` map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "coordinate_map",
    "cross_view_grid",
    "image_to_view",
    "overlap_box",
    "patch_centers",
    "patch_correspondence",
    "points_to_grid",
    "roi_align",
    "roi_sampling_grid",
    "view_to_image",
    "view_to_view",
]


def overlap_box(box_a: Tensor, box_b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection of two boxes in image coordinates.

    Args:
        box_a: ``(*, 4)`` boxes ``(x0, y0, x1, y1)``.
        box_b: ``(*, 4)`` boxes, broadcastable with ``box_a``.

    Returns:
        ``(box, valid)``: ``box`` ``(*, 4)`` the intersection and ``valid`` ``(*,)`` bool, true where it
        has positive area. Where invalid, ``box`` is a zero-area box (``x1 = max(x1, x0)``, same for y)
        so downstream arithmetic stays finite; mask those entries with ``valid``.
    """
    lo = torch.maximum(box_a[..., :2], box_b[..., :2])
    hi = torch.minimum(box_a[..., 2:], box_b[..., 2:])
    valid = (hi > lo).all(dim=-1)
    return torch.cat([lo, torch.maximum(hi, lo)], dim=-1), valid


def image_to_view(points: Tensor, box: Tensor, flip: Tensor) -> Tensor:
    """Map image coordinates into a view's coordinates.

    Args:
        points: ``(*, N, 2)`` image points ``(x, y)``.
        box: ``(*, 4)`` the view's crop box in image coordinates.
        flip: ``(*,)`` bool, whether the view was flipped horizontally after cropping.

    Returns:
        ``(*, N, 2)`` view coordinates; points outside the view fall outside ``[0, 1]``.
    """
    lo = box[..., None, :2]
    size = box[..., None, 2:] - lo
    uv = (points - lo) / size
    u = torch.where(flip[..., None], 1.0 - uv[..., 0], uv[..., 0])
    return torch.stack([u, uv[..., 1]], dim=-1)


def view_to_image(points: Tensor, box: Tensor, flip: Tensor) -> Tensor:
    """Map a view's coordinates to image coordinates (inverse of :func:`image_to_view`).

    Args:
        points: ``(*, N, 2)`` view points ``(u, v)``.
        box: ``(*, 4)`` the view's crop box in image coordinates.
        flip: ``(*,)`` bool horizontal-flip flags.

    Returns:
        ``(*, N, 2)`` image coordinates.
    """
    lo = box[..., None, :2]
    size = box[..., None, 2:] - lo
    u = torch.where(flip[..., None], 1.0 - points[..., 0], points[..., 0])
    return torch.stack([u, points[..., 1]], dim=-1) * size + lo


def view_to_view(points: Tensor, box_src: Tensor, flip_src: Tensor, box_dst: Tensor, flip_dst: Tensor) -> Tensor:
    """Map view coordinates of a source view to view coordinates of a destination view.

    Args:
        points: ``(*, N, 2)`` points in the source view.
        box_src: ``(*, 4)`` source box.
        flip_src: ``(*,)`` source flip.
        box_dst: ``(*, 4)`` destination box.
        flip_dst: ``(*,)`` destination flip.

    Returns:
        ``(*, N, 2)`` the same image points in destination view coordinates (outside ``[0, 1]`` where
        the destination does not see them).
    """
    return image_to_view(view_to_image(points, box_src, flip_src), box_dst, flip_dst)


def patch_centers(
    h: int, w: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Centres of the cells of an ``h x w`` grid tiling ``[0, 1]^2``.

    Returns:
        ``(h * w, 2)`` points ``((j + 0.5)/w, (i + 0.5)/h)``, row-major (index ``i * w + j``).
    """
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(h * w, 2)


def points_to_grid(points: Tensor) -> Tensor:
    """Normalised ``[0, 1]`` coordinates to ``grid_sample``'s ``[-1, 1]`` (``align_corners=False``)."""
    return points * 2.0 - 1.0


def coordinate_map(box: Tensor, flip: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Image coordinates of the cell centres of a view's ``out_hw`` grid (a UDI-style sampling map).

    Args:
        box: ``(*, 4)`` the view's boxes.
        flip: ``(*,)`` its flips.
        out_hw: ``(h, w)`` of the grid (the view's pixels or its patch grid).

    Returns:
        ``(*, h, w, 2)`` image points ``(x, y)``; ``points_to_grid`` of it samples the original image.
    """
    h, w = out_hw
    centers = patch_centers(h, w, device=box.device, dtype=box.dtype)
    pts = view_to_image(centers.expand(*box.shape[:-1], h * w, 2), box, flip)
    return pts.reshape(*box.shape[:-1], h, w, 2)


def cross_view_grid(
    box_a: Tensor, flip_a: Tensor, box_b: Tensor, flip_b: Tensor, grid_b: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Grid that samples view A at the cell centres of view B's ``grid_b`` grid.

    ``F.grid_sample(view_a (B, C, H_a, W_a), grid, align_corners=False)`` then returns, at position
    ``(i, j)``, what view A shows at the image point under cell ``(i, j)`` of view B.

    Args:
        box_a: ``(*, 4)`` view A's box (the view that gets sampled).
        flip_a: ``(*,)`` view A's flip.
        box_b: ``(*, 4)`` view B's box.
        flip_b: ``(*,)`` view B's flip.
        grid_b: ``(h_b, w_b)`` of view B's grid (its pixels or its patch grid).

    Returns:
        ``(grid, valid)``: ``grid`` ``(*, h_b, w_b, 2)`` in ``[-1, 1]`` where valid; ``valid``
        ``(*, h_b, w_b)`` bool, true where the point lies inside view A.
    """
    h, w = grid_b
    centers = patch_centers(h, w, device=box_b.device, dtype=box_b.dtype)
    uv = view_to_view(centers.expand(*box_b.shape[:-1], h * w, 2), box_b, flip_b, box_a, flip_a)
    valid = ((uv >= 0.0) & (uv <= 1.0)).all(dim=-1)
    lead = box_b.shape[:-1]
    return points_to_grid(uv).reshape(*lead, h, w, 2), valid.reshape(*lead, h, w)


def roi_sampling_grid(box_view: Tensor, flip_view: Tensor, roi_box: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Grid that samples a view at an ``out_hw`` grid covering ``roi_box`` (PaKA/NeCo-style ROI align).

    Cell ``(i, j)`` of the output grid is the cell centre of an ``out_hw`` grid laid over ``roi_box`` in
    *image* coordinates (unflipped), so two views aligned onto the same ROI yield spatially matching
    maps whatever their own flips.

    Args:
        box_view: ``(B, 4)`` the view's box.
        flip_view: ``(B,)`` its flip.
        roi_box: ``(B, 4)`` region in image coordinates, typically ``overlap_box`` of two views.
        out_hw: ``(oh, ow)`` output resolution.

    Returns:
        ``(B, oh, ow, 2)`` grid in ``[-1, 1]`` (inside the view when ``roi_box`` is) for
        ``F.grid_sample(features (B, D, h, w), grid, align_corners=False)``.
    """
    oh, ow = out_hw
    centers = patch_centers(oh, ow, device=roi_box.device, dtype=roi_box.dtype)
    lo = roi_box[..., None, :2]
    pts = lo + centers * (roi_box[..., None, 2:] - lo)
    uv = image_to_view(pts, box_view, flip_view)
    return points_to_grid(uv).reshape(*roi_box.shape[:-1], oh, ow, 2)


def roi_align(
    features: Tensor,
    box_view: Tensor,
    flip_view: Tensor,
    roi_box: Tensor,
    out_hw: tuple[int, int],
    *,
    sampling_ratio: int = 1,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> Tensor:
    """Resample a view's feature map onto ``roi_box`` (in image coordinates) at ``out_hw``.

    Each output cell is the mean of ``sampling_ratio × sampling_ratio`` bilinear samples at the centres of
    a regular sub-grid of the cell, the sample positions of ``torchvision.ops.roi_align(aligned=True)``;
    ``sampling_ratio=0`` chooses ``ceil(ROI extent / out size)`` samples per side and ROI from the extent
    in feature cells, like torchvision's ``sampling_ratio=-1``; ``1`` is one sample at the cell centre.
    ``padding_mode="border"`` because ROI cells near the view's edge sample within half a feature cell
    of it, where ``"zeros"`` would darken them.

    Args:
        features: ``(B, D, h, w)`` the view's feature map (or the view itself).
        box_view: ``(B, 4)`` the view's box.
        flip_view: ``(B,)`` its flip.
        roi_box: ``(B, 4)`` region in image coordinates.
        out_hw: ``(oh, ow)``.
        sampling_ratio: Samples per cell side (``0``: adaptive per ROI).
        mode: ``grid_sample`` interpolation mode.
        padding_mode: ``grid_sample`` padding mode.

    Returns:
        ``(B, D, oh, ow)`` features; cell ``(i, j)`` of two views aligned on the same ROI shows the same
        image point.
    """
    if sampling_ratio < 0:
        raise ValueError(f"sampling_ratio must be >= 0 (0: adaptive), got {sampling_ratio}")
    oh, ow = out_hw
    if sampling_ratio > 0:
        per_roi = torch.full((features.shape[0], 2), sampling_ratio, dtype=torch.int64)
    else:
        # ROI extent in the view's feature cells, as torchvision's ceil(roi_height / pooled_height).
        view_wh = (box_view[:, 2:] - box_view[:, :2]).clamp_min(1e-12)
        cells = (
            (roi_box[:, 2:] - roi_box[:, :2])
            / view_wh
            * torch.tensor([features.shape[-1], features.shape[-2]], dtype=roi_box.dtype, device=roi_box.device)
        )
        per_roi = torch.stack([(cells[:, 1] / oh).ceil(), (cells[:, 0] / ow).ceil()], dim=1).clamp_min(1).long().cpu()
    counts = sorted({tuple(r) for r in per_roi.tolist()})
    if len(counts) == 1:
        sh, sw = counts[0]
        grid = roi_sampling_grid(box_view, flip_view, roi_box, (oh * sh, ow * sw)).to(features.dtype)
        fine = F.grid_sample(features, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
        return F.avg_pool2d(fine, (sh, sw)) if (sh, sw) != (1, 1) else fine
    out = features.new_empty(features.shape[0], features.shape[1], oh, ow)
    # One sub-grid per distinct (rows, cols) sample count: a finer ROI grid averaged back to out_hw.
    for sh, sw in counts:
        rows = ((per_roi[:, 0] == sh) & (per_roi[:, 1] == sw)).nonzero().squeeze(1).to(features.device)
        grid = roi_sampling_grid(box_view[rows], flip_view[rows], roi_box[rows], (oh * sh, ow * sw))
        fine = F.grid_sample(
            features[rows], grid.to(features.dtype), mode=mode, padding_mode=padding_mode, align_corners=False
        )
        out[rows] = F.avg_pool2d(fine, (sh, sw)) if (sh, sw) != (1, 1) else fine
    return out


def patch_correspondence(
    box_a: Tensor,
    flip_a: Tensor,
    grid_a: tuple[int, int],
    box_b: Tensor,
    flip_b: Tensor,
    grid_b: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """For each patch of view B, the patch of view A containing the same image point (CoTAP-style).

    Args:
        box_a: ``(*, 4)`` view A's box.
        flip_a: ``(*,)`` view A's flip.
        grid_a: ``(h_a, w_a)`` view A's patch grid.
        box_b: ``(*, 4)`` view B's box.
        flip_b: ``(*,)`` view B's flip.
        grid_b: ``(h_b, w_b)`` view B's patch grid.

    Returns:
        ``(index, valid)``, both ``(*, h_b * w_b)``: ``index`` (long) row-major into view A's flattened
        patches of the patch containing B's patch centre; ``valid`` (bool) false where that centre lies
        outside view A (cells are half-open ``[j/w, (j+1)/w)``), where ``index`` is clamped to the
        nearest patch and must be masked.
    """
    hb, wb = grid_b
    ha, wa = grid_a
    centers = patch_centers(hb, wb, device=box_b.device, dtype=box_b.dtype)
    uv = view_to_view(centers.expand(*box_b.shape[:-1], hb * wb, 2), box_b, flip_b, box_a, flip_a)
    valid = ((uv >= 0.0) & (uv < 1.0)).all(dim=-1)
    col = torch.floor(uv[..., 0] * wa).long().clamp(0, wa - 1)
    row = torch.floor(uv[..., 1] * ha).long().clamp(0, ha - 1)
    return row * wa + col, valid
