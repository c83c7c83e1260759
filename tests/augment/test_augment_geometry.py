"""Geometry helpers on hand-built boxes (no augmentation involved)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dssl.augment.geometry import (
    coordinate_map,
    cross_view_grid,
    image_to_view,
    overlap_box,
    patch_centers,
    patch_correspondence,
    roi_align,
    roi_sampling_grid,
    view_to_image,
)


def test_overlap_box_intersection_and_disjoint() -> None:
    a = torch.tensor([[0.0, 0.0, 0.6, 0.5], [0.0, 0.0, 0.3, 0.3], [0.0, 0.0, 0.5, 0.5]])
    b = torch.tensor([[0.2, 0.1, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0], [0.5, 0.0, 1.0, 0.5]])
    box, valid = overlap_box(a, b)
    assert valid.tolist() == [True, False, False]  # touching edges have zero area
    assert torch.allclose(box[0], torch.tensor([0.2, 0.1, 0.6, 0.5]))
    width_height = box[:, 2:] - box[:, :2]
    assert (width_height >= 0).all()  # invalid boxes are degenerate, never inverted


def test_overlap_box_broadcasts_over_views() -> None:
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(4, 3, 2, generator=g) * 0.4
    boxes = torch.cat([lo, lo + 0.6], dim=-1)  # every box contains [0.4, 0.6]^2
    box, valid = overlap_box(boxes[:, :1], boxes)
    assert box.shape == (4, 3, 4) and valid.shape == (4, 3)
    assert valid.all()
    assert torch.allclose(box[:, 0], boxes[:, 0])


def test_patch_centers_row_major_x_first() -> None:
    c = patch_centers(2, 4)
    assert c.shape == (8, 2)
    assert torch.allclose(c[0], torch.tensor([0.125, 0.25]))
    assert torch.allclose(c[1], torch.tensor([0.375, 0.25]))  # next column: x grows
    assert torch.allclose(c[4], torch.tensor([0.125, 0.75]))  # next row: y grows


def test_image_view_round_trip_with_flip() -> None:
    box = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.25, 0.5, 0.75, 1.0]])
    flip = torch.tensor([False, True])
    pts = torch.tensor([[0.25, 0.5], [0.5, 0.75]]).expand(2, 2, 2)
    uv = image_to_view(pts, box, flip)
    assert torch.allclose(uv[0], torch.tensor([[0.0, 0.0], [0.5, 0.5]]))
    assert torch.allclose(uv[1], torch.tensor([[1.0, 0.0], [0.5, 0.5]]))  # left box edge is the flipped view's right
    assert torch.allclose(view_to_image(uv, box, flip), pts)


def test_patch_correspondence_hand_built() -> None:
    # View A: whole image, 4x4 patches, unflipped. View B: right half, flipped, 4 rows x 2 columns.
    box_a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    box_b = torch.tensor([[0.5, 0.0, 1.0, 1.0]])
    idx, valid = patch_correspondence(box_a, torch.tensor([False]), (4, 4), box_b, torch.tensor([True]), (4, 2))
    assert valid.all()
    # B's left column (flipped) shows the image's far right, column 3 of A; B's right column shows column 2.
    assert idx[0].tolist() == [3, 2, 7, 6, 11, 10, 15, 14]


def test_patch_correspondence_outside_is_invalid() -> None:
    box_a = torch.tensor([[0.0, 0.0, 0.5, 1.0]])
    box_b = torch.tensor([[0.25, 0.0, 0.75, 1.0]])
    no = torch.tensor([False])
    idx, valid = patch_correspondence(box_a, no, (2, 2), box_b, no, (1, 4))
    assert valid[0].tolist() == [True, True, False, False]
    assert idx[0, :2].tolist() == [3, 3]  # both centres fall in A's bottom-right patch


def test_roi_align_recovers_roi_coordinates() -> None:
    # A "feature map" that stores, per cell, the image coordinates it shows: ROI align must return the
    # ROI cell centres whatever the view's box and flip.
    box = torch.tensor([[0.1, 0.2, 0.9, 0.8], [0.1, 0.2, 0.9, 0.8]])
    flip = torch.tensor([False, True])
    feats = coordinate_map(box, flip, (16, 16)).permute(0, 3, 1, 2)  # (B, 2, 16, 16)
    roi = torch.tensor([[0.3, 0.3, 0.7, 0.7]]).expand(2, 4)
    out = roi_align(feats, box, flip, roi, (4, 4))
    expect = (0.3 + 0.4 * patch_centers(4, 4)).T.reshape(2, 4, 4)
    assert torch.allclose(out[0], expect, atol=1e-5) and torch.allclose(out[1], expect, atol=1e-5)
    grid = roi_sampling_grid(box, flip, roi, (4, 4))
    assert grid.shape == (2, 4, 4, 2) and (grid.abs() <= 1).all()


def test_cross_view_grid_validity() -> None:
    box_a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    box_b = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    no = torch.tensor([False])
    grid, valid = cross_view_grid(box_a, no, box_b, no, (2, 2))
    assert grid.shape == (1, 2, 2, 2)
    assert valid[0].tolist() == [[True, False], [False, False]]
    sampled = F.grid_sample(torch.arange(4.0).view(1, 1, 2, 2), grid, align_corners=False)
    assert sampled[0, 0, 0, 0].item() == 3.0  # B's top-left patch centre is A's bottom-right cell


@pytest.mark.parametrize(("ours", "theirs"), [(1, 1), (2, 2), (3, 3), (0, -1)])
def test_roi_align_sub_samples_like_torchvision(ours: int, theirs: int) -> None:
    """Averaged sub-samples per cell at torchvision.ops.roi_align(aligned=True)'s positions (0 = adaptive)."""
    from torchvision.ops import roi_align as tv_roi_align

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 5, 12, 16, generator=g, dtype=torch.float64)
    view = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3, dtype=torch.float64)
    roi = torch.tensor([[0.2, 0.15, 0.8, 0.85], [0.3, 0.3, 0.5, 0.45], [0.1, 0.2, 0.9, 0.6]], dtype=torch.float64)
    got = roi_align(feats, view, torch.zeros(3, dtype=torch.bool), roi, (4, 3), sampling_ratio=ours)
    scale = torch.tensor([16.0, 12.0, 16.0, 12.0], dtype=torch.float64)
    boxes = torch.cat([torch.arange(3, dtype=torch.float64)[:, None], roi * scale], dim=1)
    expected = tv_roi_align(feats, boxes, (4, 3), spatial_scale=1.0, sampling_ratio=theirs, aligned=True)
    torch.testing.assert_close(got, expected)
