"""Per-patch class histograms of pixel masks, in memory independent of the number of classes.

Hummingbird's soft labels and the concentration diagnostic's majority labels both need, for every patch
of the feature grid, the fraction of its pixels of each class. The direct way,
``adaptive_avg_pool2d(one_hot(mask))``, materialises a ``(B, H, W, C)`` int64 one-hot tensor: at 448 px
and ADE20K's 151 classes that is 242 MB *per image* (7.8 GB for a batch of 32). When the mask size is a
multiple of the grid (every ViT input), :func:`patch_class_fractions` counts the labels of each patch with
one ``bincount`` instead (``B * H * W`` int64 indices), and divides exactly as the pooling kernel does,
so the result is bit-for-bit the pooled one-hot. Other sizes (overlapping adaptive windows) fall back to
the one-hot pooling, ``chunk_images`` images at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Images per one-hot pooling call on the fallback path (grid does not divide the mask).
DEFAULT_CHUNK_IMAGES = 4


def patch_class_fractions(
    labels: Tensor, grid_hw: tuple[int, int], num_bins: int, *, chunk_images: int = DEFAULT_CHUNK_IMAGES
) -> Tensor:
    """Fraction of each label's pixels in every patch of a ``grid_hw`` grid.

    Equal (bit for bit, on the CPU) to
    ``F.adaptive_avg_pool2d(F.one_hot(labels, num_bins).permute(0, 3, 1, 2).float(), grid_hw)``
    flattened to ``(B, h*w, num_bins)``.

    Args:
        labels: ``(B, H, W)`` integer labels in ``[0, num_bins)``.
        grid_hw: The patch grid ``(h, w)``.
        num_bins: Number of label values ``C``.
        chunk_images: Images per one-hot call when ``H, W`` are not multiples of ``h, w``.

    Returns:
        ``(B, h*w, num_bins)`` float32 fractions (rows sum to 1).
    """
    b, height, width = labels.shape
    h, w = grid_hw
    labels = labels.to(torch.int64)
    if height % h == 0 and width % w == 0:
        ph, pw = height // h, width // w
        # (B, h, ph, w, pw) -> (B*h*w, ph*pw): the pixels of each patch on one row.
        per_patch = labels.reshape(b, h, ph, w, pw).permute(0, 1, 3, 2, 4).reshape(b * h * w, ph * pw)
        flat = (torch.arange(b * h * w, device=labels.device)[:, None] * num_bins + per_patch).reshape(-1)
        counts = torch.bincount(flat, minlength=b * h * w * num_bins).view(b, h * w, num_bins)
        # Divided by ph, then pw: the order of the CPU pooling kernel, so the values match it exactly.
        return counts.to(torch.float32) / ph / pw
    chunks = []
    for first in range(0, b, chunk_images):
        one_hot = F.one_hot(labels[first : first + chunk_images], num_bins).permute(0, 3, 1, 2).to(torch.float32)
        chunks.append(F.adaptive_avg_pool2d(one_hot, grid_hw).flatten(2).transpose(1, 2))
    return torch.cat(chunks).contiguous()
