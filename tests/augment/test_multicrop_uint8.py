"""MultiCrop on uint8 images (decoded files): the same boxes and flips, the pixels the geometry says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dssl.augment.geometry import coordinate_map
from dssl.augment.multicrop import MultiCrop
from dssl.augment.multicrop_config import MultiCropOptions
from dssl.data.normalize import IMAGENET_MEAN, IMAGENET_STD

# Non-square on purpose, so that swapped x/y or H/W cannot pass.
H, W = 60, 100
SMALL = {"global_size": 24, "local_size": 12, "n_global": 2, "n_local": 4}


def denormalize(x: torch.Tensor) -> torch.Tensor:
    return x * x.new_tensor(IMAGENET_STD).view(3, 1, 1) + x.new_tensor(IMAGENET_MEAN).view(3, 1, 1)


def coordinate_image_uint8() -> torch.Tensor:
    """R = x and G = y of each pixel centre (normalised image coordinates) in 8 bits, B = 128; channels-last
    strides, as a decoder returns them."""
    ys = (torch.arange(H) + 0.5) / H
    xs = (torch.arange(W) + 0.5) / W
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    hwc = torch.stack([gx, gy, torch.full_like(gx, 0.5)], dim=-1)
    return (hwc * 255).round().to(torch.uint8).permute(2, 0, 1)


def views_of(image: torch.Tensor, seed: int, **overrides: object):
    options = MultiCropOptions(**{**SMALL, "photometric": False, **overrides})
    return MultiCrop(options)(image, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(4))
def test_uint8_view_content_matches_box_and_flip(seed: int) -> None:
    # Each pixel of a view of the 8-bit coordinate image shows the image point its box and flip say.
    views = views_of(coordinate_image_uint8(), seed)
    seen_flips = set()
    for v, crop in enumerate(views.crops):
        size = crop.shape[-1]
        shown = denormalize(crop)[:2].permute(1, 2, 0)
        expect = coordinate_map(views.boxes[v], views.flips[v], (size, size))
        inner = slice(3, size - 3)  # the antialiasing kernel is truncated at the crop border
        err = (shown[inner, inner] - expect[inner, inner]).abs()
        # A quarter of an input pixel as on the float path, plus 8-bit rounding of the ramp and of the view.
        assert err[..., 0].max() < 0.25 / W + 1.5 / 255 and err[..., 1].max() < 0.25 / H + 1.5 / 255, (v, err.max())
        seen_flips.add(bool(views.flips[v]))
        decreasing = bool((shown[:, -1, 0] < shown[:, 0, 0]).all())
        assert decreasing == bool(views.flips[v])
    assert seen_flips == {True, False}


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_uint8_views_equal_float_views_up_to_8_bit_rounding(interpolation: str) -> None:
    image = (torch.rand(3, H, W, generator=torch.Generator().manual_seed(3)) * 255).round().to(torch.uint8)
    for seed in range(3):
        as_uint8 = views_of(image, seed, interpolation=interpolation)
        as_float = views_of(image.float() / 255, seed, interpolation=interpolation)
        assert torch.equal(as_uint8.boxes, as_float.boxes) and torch.equal(as_uint8.flips, as_float.flips)
        # Bilinear: one 8-bit step (the kernel's fixed-point weights, the rounding of its output). Bicubic also
        # saturates the overshoot of its first (horizontal) pass, which float clamps only at the end: two steps.
        steps = 1.0 if interpolation == "bilinear" else 2.0
        for a, b in zip(as_uint8.crops, as_float.crops, strict=True):
            assert (denormalize(a) - denormalize(b)).abs().max() <= steps / 255 + 1e-6
            assert a.dtype == torch.float32 and a.is_contiguous()


def test_uint8_path_is_layout_independent_and_follows_the_boxes() -> None:
    hwc = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    planar = hwc.permute(2, 0, 1).contiguous()
    strided = hwc.permute(2, 0, 1)  # a decoder's channels-last strides
    a, b = views_of(planar, 5), views_of(strided, 5)
    assert all(torch.equal(x, y) for x, y in zip(a.crops, b.crops, strict=True))
    # The view is the 8-bit antialiased resize of exactly the reported box.
    px = (a.boxes * torch.tensor([W, H, W, H])).round().long().tolist()
    for v, (x0, y0, x1, y1) in enumerate(px):
        size = a.crops[v].shape[-1]
        patch = planar[None, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)
        ref = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True)[0].float() / 255
        ref = ref.flip(-1) if a.flips[v] else ref
        assert torch.allclose(denormalize(a.crops[v]), ref, atol=1e-5)


def test_uint8_photometric_views_stay_in_range_and_are_seeded() -> None:
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    mc = MultiCrop(MultiCropOptions(**SMALL, return_clean=True))
    one = mc(image, generator=torch.Generator().manual_seed(9))
    two = mc(image, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(x, y) for x, y in zip(one.crops, two.crops, strict=True))
    assert one.clean is not None
    for crop in one.crops + one.clean:
        raw = denormalize(crop)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
