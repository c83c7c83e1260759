"""UDI's augmentation (``DataAugmentation`` in ``udi_augmentation.py`` of ISL-CV/udi) on dssl's multi-crop.

Geometry, as the official code:

1. student global crop: a RandomResizedCrop box (``RandomCropCoord.get_params``), scale (0.25, 1);
2. teacher global crop: a box drawn the same way, then **shifted towards the student crop**
   (``get_params_ref``): when the crops overlap by less than half the smaller side along an axis (or not at
   all), the teacher box moves towards the reference by the gap plus half the smaller side, then is clamped
   into the image — so the two globals overlap by about ≥ 25% of the smaller crop;
3. local crops: drawn with scale (0.05, 0.25) and shifted the same way towards a reference box built from the
   two globals (``local_reference``; official: ``_crop_intersection``).

Rendering and the photometric ops are dssl's :class:`~dssl.augment.multicrop.MultiCrop` (crop → resize → flip →
jitter → grayscale → blur → solarise → normalise); UDI's per-view blur/solarisation choice (a random select
between "blur with p 0.5 or 1.0" and "blur p 0.1 + solarise p 0.2") is decided here and handed to it.
The SRS sampling maps are built by the objective from the returned boxes and flips.

Example:
    >>> aug = UDIAugmentation(UDIAugmentationOptions(global_size=64, local_size=32, n_local=2))
    >>> views = aug(torch.rand(3, 96, 96), generator=torch.Generator().manual_seed(0))
    >>> len(views.crops), views.n_global
    (4, 2)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from dssl.plugin import DRAWS, MultiCrop, MultiCropOptions, Views, normalize
from torch import Tensor

from dssl_udi.augmentation_config import UDIAugmentationOptions

__all__ = ["UDIAugmentation", "reference_box", "shift_to_reference"]

Box = tuple[int, int, int, int]  # (i, j, I, J): first/last pixel row and column, inclusive (official 'ij')


def shift_to_reference(crop: Box, ref: Box, height: int, width: int, *, width_quirk: bool = True) -> Box:
    """``get_params_ref``'s shift of a sampled crop towards a reference crop (integer pixel arithmetic).

    Args:
        crop: ``(i, j, I, J)`` the sampled crop, inclusive pixel indices.
        ref: ``(ri, rj, rI, rJ)`` the reference crop, unflipped, inclusive.
        height: Image height ``H``.
        width: Image width ``W``.
        width_quirk: Use the row start ``i`` in the width bounding box, as the official code does.

    Returns:
        The shifted crop ``(i, j, I, J)`` (same size), inside the image.
    """
    i, j, big_i, big_j = crop
    h, w = big_i - i + 1, big_j - j + 1
    ri, rj, r_i, r_j = ref
    rh, rw = r_i - ri, r_j - rj
    ri_c, rj_c = (r_i + ri) / 2, (r_j + rj) / 2
    i_c, j_c = (i + big_i) / 2, (j + big_j) / 2
    bb_h = max(big_i, r_i) - min(i, ri)
    bb_w = max(big_j, r_j) - min(i if width_quirk else j, rj)
    i_shift: float = bb_h - h - rh if bb_h > h + rh else 0
    j_shift: float = bb_w - w - rw if bb_w > w + rw else 0
    h_min, w_min = min(rh, h), min(rw, w)
    i_shift += 0.5 * h_min if bb_h >= h + rh - 0.5 * h_min else 0
    j_shift += 0.5 * w_min if bb_w >= w + rw - 0.5 * w_min else 0
    i += round((ri_c - i_c) / (abs(ri_c - i_c) + 1e-5) * i_shift)
    j += round((rj_c - j_c) / (abs(rj_c - j_c) + 1e-5) * j_shift)
    i = max(0, min(i, height - h))
    j = max(0, min(j, width - w))
    return i, j, i + h - 1, j + w - 1


def reference_box(a: Box, flip_a: bool, b: Box, flip_b: bool, mode: str) -> Box:
    """Reference of the local crops from the two global crops (``local_reference``; see the options)."""
    if mode == "intersection":
        lo_i, lo_j = max(a[0], b[0]), max(a[1], b[1])
        hi_i, hi_j = min(a[2], b[2]), min(a[3], b[3])
        if hi_i > lo_i and hi_j > lo_j:
            return lo_i, lo_j, hi_i, hi_j
        mode = "union"  # disjoint globals (cannot happen after the shift, but stay defined)
    if mode == "official":
        # Official coords swap the columns of a flipped crop; _crop_intersection takes min of the first and max
        # of the second corners of those coords, and get_params_ref unflips the result.
        ca = (a[0], a[3], a[2], a[1]) if flip_a else a
        cb = (b[0], b[3], b[2], b[1]) if flip_b else b
        ri, rj = min(ca[0], cb[0]), min(ca[1], cb[1])
        r_i, r_j = max(ca[2], cb[2]), max(ca[3], cb[3])
        return min(ri, r_i), min(rj, r_j), max(ri, r_i), max(rj, r_j)
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class UDIAugmentation:
    """UDI multi-crop returning dssl :class:`Views` (2 globals, then locals) with exact boxes and flips.

    Args:
        options: :class:`UDIAugmentationOptions`.
    """

    #: Takes uint8 images (decoded files): MultiCrop crops them in 8 bits.
    accepts_uint8: ClassVar[bool] = True

    def __init__(self, options: UDIAugmentationOptions | None = None) -> None:
        self.options = options or UDIAugmentationOptions()
        o = self.options
        # Blur/solarise probabilities of 1 on every view: the events are decided in __call__ (UDI's random
        # select) and handed over through the uniform draws (u = 0 fires, u = 1 does not).
        self._multicrop = MultiCrop(
            MultiCropOptions(
                global_size=o.global_size,
                local_size=o.local_size,
                n_global=2,
                n_local=o.n_local,
                global_scale=o.global_scale,
                local_scale=o.local_scale,
                ratio=o.ratio,
                interpolation=o.interpolation,
                hflip_p=o.hflip_p,
                photometric=o.photometric,
                color_jitter=o.color_jitter,
                color_jitter_p=o.color_jitter_p,
                grayscale_p=o.grayscale_p,
                blur_p_global=(1.0,),
                blur_p_local=1.0,
                blur_sigma=o.blur_sigma,
                solarize_p_global=(1.0,),
                solarize_p_local=1.0,
            )
        )

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Views:
        """All views of one image ``(3, H, W)``: float in ``[0, 1]``, or uint8 (cropped in 8 bits by MultiCrop)."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
        o, mc = self.options, self._multicrop
        n_views = o.n_views
        height, width = image.shape[-2:]
        u = torch.rand(n_views, DRAWS.count, generator=generator, dtype=torch.float64)
        branch = torch.rand(n_views, 4, generator=generator, dtype=torch.float64)
        raw = mc.sample_boxes(u, height, width)  # (x0, y0, x1, y1) pixel edges, RandomResizedCrop's law
        flips = u[:, DRAWS.flip] < o.hflip_p
        boxes: list[Box] = [(y0, x0, y1 - 1, x1 - 1) for x0, y0, x1, y1 in raw]
        boxes[1] = shift_to_reference(boxes[1], boxes[0], height, width, width_quirk=o.width_quirk)
        ref = reference_box(boxes[0], bool(flips[0]), boxes[1], bool(flips[1]), o.local_reference)
        for v in range(2, n_views):
            boxes[v] = shift_to_reference(boxes[v], ref, height, width, width_quirk=o.width_quirk)
        boxes_px = [(j, i, big_j + 1, big_i + 1) for i, j, big_i, big_j in boxes]

        # utils.RandomSelect(RandomSelect(Blur(0.5), Blur(1.0)), [Blur(0.1), Solarization(0.2)], p=0.5).
        first = branch[:, 0] < 0.5
        blur_p = torch.where(first, torch.where(branch[:, 1] < 0.5, 0.5, 1.0), 0.1)
        blur = branch[:, 2] < blur_p
        solar = ~first & (branch[:, 3] < 0.2)
        u[:, DRAWS.blur] = torch.where(blur, 0.0, 1.0)
        u[:, DRAWS.solarize] = torch.where(solar, 0.0, 1.0)

        crops: list[Tensor] = []
        for start, stop, size in ((0, 2, o.global_size), (2, n_views, o.local_size)):
            if stop <= start:
                continue
            group = mc.render_geometry(image, boxes_px[start:stop], flips[start:stop], size)
            if o.photometric:
                group = mc.photometric(group, u[start:stop].float(), start)
            crops.extend(normalize(group).unbind(0))
        scale = torch.tensor([width, height, width, height], dtype=torch.float64)
        boxes_norm = (torch.tensor(boxes_px, dtype=torch.float64) / scale).float()
        return Views(crops=crops, boxes=boxes_norm, flips=flips, clean=None, n_global=2)
