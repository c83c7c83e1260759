"""Per-patch class histograms: the counting path equals the pooled one-hot it replaces, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dssl.evaluators.patch_labels import patch_class_fractions


def pooled_one_hot(labels: torch.Tensor, grid_hw: tuple[int, int], num_bins: int) -> torch.Tensor:
    """The former implementation: one (B, H, W, C) one-hot, adaptive average pooling."""
    one_hot = F.one_hot(labels, num_bins).permute(0, 3, 1, 2).to(torch.float32)
    return F.adaptive_avg_pool2d(one_hot, grid_hw).flatten(2).transpose(1, 2).contiguous()


@pytest.mark.parametrize(
    ("patch_hw", "grid_hw"),
    [((16, 16), (3, 4)), ((14, 14), (2, 3)), ((3, 5), (4, 2)), ((7, 7), (3, 3)), ((13, 11), (2, 2)), ((1, 1), (3, 3))],
)
def test_counting_equals_pooled_one_hot_exactly(patch_hw: tuple[int, int], grid_hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(sum(patch_hw))
    labels = torch.randint(0, 7, (3, grid_hw[0] * patch_hw[0], grid_hw[1] * patch_hw[1]), generator=g)
    got = patch_class_fractions(labels, grid_hw, 7)
    assert got.shape == (3, grid_hw[0] * grid_hw[1], 7) and got.dtype == torch.float32
    assert torch.equal(got, pooled_one_hot(labels, grid_hw, 7))


@pytest.mark.parametrize("chunk_images", [1, 2, 5])
def test_non_divisible_grid_falls_back_to_chunked_pooling(chunk_images: int) -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (5, 10, 9), generator=g)  # 10 x 9 pixels on a 3 x 4 grid: overlapping windows
    got = patch_class_fractions(labels, (3, 4), 4, chunk_images=chunk_images)
    assert torch.equal(got, pooled_one_hot(labels, (3, 4), 4))
    torch.testing.assert_close(got.sum(dim=2), torch.ones(5, 12))


def test_memory_does_not_grow_with_the_number_of_classes() -> None:
    # 1,000 bins on a 64x64 mask: a one-hot would hold 4M int64; the counts hold one row per patch.
    labels = torch.full((1, 64, 64), 999)
    labels[0, :8, :8] = 3
    got = patch_class_fractions(labels, (8, 8), 1000)
    assert got[0, 0, 3] == 1.0 and got[0, 1, 999] == 1.0 and float(got.sum()) == 64.0
