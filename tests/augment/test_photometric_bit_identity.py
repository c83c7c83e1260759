"""The faster photometric kernels give bit for bit the views of the implementations the CPU track was measured with.

The committed CPU-track numbers (benchmarks/RESULTS.md) were produced with the planar grouped-convolution blur
and the one-blend-per-step colour jitter kept below as references (dssl before the input-pipeline work). The
current kernels (channels-last blur, jitter grouped by op) must reproduce them exactly, not approximately, or
those numbers would no longer describe the code.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dssl.augment.multicrop import _adjust_hue, _blend, _color_jitter, _gaussian_blur, _grayscale


def reference_color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor, hue_on: bool) -> torch.Tensor:
    ones = torch.ones_like(factors[:, 0])
    for step in range(4):
        op = order[:, step]
        f = torch.where(op == 3, ones, factors.gather(1, op.clamp(max=2)[:, None])[:, 0])
        gray = _grayscale(x)
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        other = torch.where((op == 0).view(-1, 1, 1, 1), 0.0, torch.where((op == 1).view(-1, 1, 1, 1), mean, gray))
        x = _blend(x, other, f)
        if hue_on:
            idx = (op == 3).nonzero()[:, 0]
            if idx.numel():
                x[idx] = reference_adjust_hue(x[idx], factors[idx, 3])
    return x


def reference_adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    chroma = maxc - x.amin(dim=1)
    inv = 1.0 / chroma.clamp(min=1e-12)
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~(is_r | is_g)
    h6 = is_r * ((g - b) * inv) + is_g * (2.0 + (b - r) * inv) + is_b * (4.0 + (r - g) * inv)
    t = h6.unsqueeze(1) + (x.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + 6.0 * shift.view(-1, 1, 1, 1))
    k = t - 6.0 * torch.floor(t * (1.0 / 6.0))
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * weight


def reference_gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    m, c, h, w = x.shape
    radius = min(math.ceil(3.0 * max_sigma), h - 1, w - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)
    flat = x.reshape(1, m * c, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=m * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=m * c)
    return flat.reshape(m, c, h, w)


# The CPU track's view sizes (64, 32), the GPU preset's (224, 96), odd and tiny ones.
SHAPES = [(1, 64), (2, 64), (4, 32), (3, 224), (10, 96), (5, 17), (2, 3)]


@pytest.mark.parametrize(("m", "size"), SHAPES)
def test_color_jitter_is_bit_identical_to_the_reference(m: int, size: int) -> None:
    g = torch.Generator().manual_seed(m * 1000 + size)
    for trial in range(4):
        x = torch.rand(m, 3, size, size, generator=g)
        if trial == 1:
            x = (x * 1.05).clamp(0.0, 1.0000001)  # values at (and rounding just above) 1, as resizes give
        low = torch.tensor([0.6, 0.6, 0.2, -0.5])
        high = torch.tensor([1.4, 1.4, 1.8, 0.5])
        factors = low + (high - low) * torch.rand(m, 4, generator=g)
        order = torch.rand(m, 4, generator=g).argsort(dim=1)
        for hue_on in (True, False):
            expected = reference_color_jitter(x.clone(), factors, order, hue_on)
            assert torch.equal(_color_jitter(x.clone(), factors, order, hue_on), expected), (trial, hue_on)


@pytest.mark.parametrize(("m", "size"), SHAPES)
def test_gaussian_blur_is_bit_identical_to_the_reference(m: int, size: int) -> None:
    g = torch.Generator().manual_seed(m * 100 + size)
    for max_sigma in (0.5, 2.0):
        x = torch.rand(m, 3, size, size, generator=g)
        sigma = 0.1 + (max_sigma - 0.1) * torch.rand(m, generator=g)
        expected = reference_gaussian_blur(x, sigma, max_sigma)
        assert torch.equal(_gaussian_blur(x, sigma, max_sigma), expected), max_sigma


@pytest.mark.parametrize(("m", "size"), SHAPES)
def test_adjust_hue_is_bit_identical_to_the_reference(m: int, size: int) -> None:
    g = torch.Generator().manual_seed(m * 10 + size)
    for trial in range(3):
        x = torch.rand(m, 3, size, size, generator=g)
        if trial == 1:
            x = (x * 4).round() / 4  # ties between channels (R before G before B) and grey pixels
        shift = torch.rand(m, generator=g) - 0.5
        assert torch.equal(_adjust_hue(x, shift), reference_adjust_hue(x, shift)), trial
