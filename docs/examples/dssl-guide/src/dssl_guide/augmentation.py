"""The guide augmentation: two random crops with flips, and their geometry (an example to replace).

An augmentation turns one image ``(3, H, W)`` in ``[0, 1]`` into ``dssl.plugin.Views``: the views (normalised,
globals first) with, for each, its crop box in the original image's normalised coordinates and its flip, so that
dense objectives can tell which patch of one view lies over which patch of another. It must draw all its
randomness from the ``generator`` it is given: the same seed then gives the same views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dssl.plugin import Views, normalize

from dssl_guide.config import GuideAugmentationOptions


class GuideAugmentation:
    """Two crops of random area (``min_scale`` to the whole image) and aspect ratio 1, each flipped with
    probability 1/2 and resized to ``size``.

    Args:
        options: The validated :class:`GuideAugmentationOptions`.
    """

    def __init__(self, options: GuideAugmentationOptions) -> None:
        self.options = options

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> Views:
        """The two views of ``image`` ``(3, H, W)`` in ``[0, 1]``, with boxes ``(2, 4)`` and flips ``(2,)``."""
        size, min_scale = self.options.size, self.options.min_scale
        height, width = image.shape[-2:]
        crops, boxes, flips = [], [], []
        for _ in range(2):
            scale = min_scale + (1.0 - min_scale) * float(torch.rand((), generator=generator))
            h, w = max(1, round(height * scale**0.5)), max(1, round(width * scale**0.5))
            y0 = int(torch.randint(0, height - h + 1, (), generator=generator))
            x0 = int(torch.randint(0, width - w + 1, (), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
            crop = image[None, :, y0 : y0 + h, x0 : x0 + w].float()
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
            crops.append(normalize((crop.flip(-1) if flip else crop).clamp(0.0, 1.0)))
            boxes.append((x0 / width, y0 / height, (x0 + w) / width, (y0 + h) / height))
            flips.append(flip)
        return Views(crops=crops, boxes=torch.tensor(boxes), flips=torch.tensor(flips), clean=None, n_global=2)
