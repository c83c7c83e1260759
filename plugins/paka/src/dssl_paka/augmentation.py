"""PaKA's augmentation: the core :class:`~dssl.augment.multicrop.MultiCrop` with high-overlap student locals.

Only the choice of the local boxes changes; rendering, flips, photometric ops and the clean (teacher)
renderings are MultiCrop's (``return_clean``). Local ``k`` has parent global ``k % n_global``:

1. up to ``max_attempts`` proposals, each using MultiCrop's own per-view uniform draws (area as a fraction of
   the image or of the parent, log-uniform aspect ratio, **centre uniform inside the parent box**, then shifted
   to lie inside the image);
2. the first proposal whose overlap with the parent (containment ``|L∩G|/|L|`` or IoU) reaches
   ``min_overlap`` is kept;
3. fallback when none does: the proposal with the largest overlap, translated into the parent box.

A local is never wider or taller than its parent (its size is capped by the parent's), so the fallback always
lies inside the parent: with ``overlap="containment"`` every local reaches ``min_overlap`` (without the cap the
default scales gave a minimum containment of 0.77 and 6 % fallbacks). The number of fallbacks of each image is
reported in ``Views.stats["local_fallbacks"]``; the PaKA objective logs the rate. A documented reconstruction.

Example:
    >>> import torch
    >>> from dssl_paka.augmentation_config import PaKACropOptions
    >>> aug = PaKACrop(PaKACropOptions(global_size=64, local_size=32, n_local=4))
    >>> views = aug(torch.rand(3, 96, 96), generator=torch.Generator().manual_seed(0))
    >>> len(views.crops), len(views.clean)
    (6, 6)
"""

from __future__ import annotations

import math

import torch
from dssl.plugin import DRAWS, MultiCrop, Views
from torch import Tensor

from dssl_paka.augmentation_config import PaKACropOptions

__all__ = ["PaKACrop", "box_overlap"]

Box = tuple[int, int, int, int]


def box_overlap(local: Tensor, parent: Tensor, kind: str = "containment") -> Tensor:
    """Overlap of boxes ``(*, 4)`` ``(x0, y0, x1, y1)``: ``|L∩G|/|L|`` (``"containment"``) or IoU (``"iou"``)."""
    lo = torch.maximum(local[..., :2], parent[..., :2])
    hi = torch.minimum(local[..., 2:], parent[..., 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area_l = (local[..., 2:] - local[..., :2]).prod(-1)
    if kind == "containment":
        return inter / area_l.clamp_min(1e-12)
    area_p = (parent[..., 2:] - parent[..., :2]).prod(-1)
    return inter / (area_l + area_p - inter).clamp_min(1e-12)


def _shift_inside(start: int, size: int, lo: int, hi: int) -> int:
    """Start of a ``size`` segment moved the least so it lies in ``[lo, hi]`` (centred on it if larger)."""
    if size >= hi - lo:
        return lo + (hi - lo - size) // 2
    return min(max(start, lo), hi - size)


class PaKACrop(MultiCrop):
    """Multi-crop with clean teacher renderings and locals sampled to overlap their parent global.

    Args:
        options: :class:`~dssl_paka.augmentation_config.PaKACropOptions` (or ``None`` for its defaults).
    """

    options: PaKACropOptions

    def __init__(self, options: PaKACropOptions | None = None) -> None:
        super().__init__(options if options is not None else PaKACropOptions())
        #: Local proposals that fell back (no attempt reached ``min_overlap``), for diagnostics.
        self.fallbacks = 0

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Views:
        """MultiCrop's views, with ``stats["local_fallbacks"]``: this image's locals that fell back."""
        before = self.fallbacks
        views = super().__call__(image, generator=generator)
        views.stats["local_fallbacks"] = torch.tensor(float(self.fallbacks - before))
        return views

    def sample_boxes(self, u: Tensor, height: int, width: int) -> list[Box]:
        boxes = super().sample_boxes(u, height, width)
        o = self.options
        for k in range(o.n_local):
            view = o.n_global + k
            boxes[view] = self._local_box(u[view], boxes[k % o.n_global], height, width)
        return boxes

    def _local_box(self, u: Tensor, parent: Box, height: int, width: int) -> Box:
        o = self.options
        px0, py0, px1, py1 = parent
        base_area = (px1 - px0) * (py1 - py0) if o.local_scale_of == "parent" else height * width
        lo_s, hi_s = o.local_scale
        lr0, lr1 = math.log(o.ratio[0]), math.log(o.ratio[1])
        parent_t = torch.tensor(parent, dtype=torch.float64)
        best: tuple[float, Box] | None = None
        scales, log_ratios, xs, ys = u[DRAWS.scale], u[DRAWS.log_ratio], u[DRAWS.x], u[DRAWS.y]
        for a in range(min(o.max_attempts, DRAWS.attempts)):
            area = base_area * (lo_s + (hi_s - lo_s) * float(scales[a]))
            aspect = math.exp(lr0 + (lr1 - lr0) * float(log_ratios[a]))
            # Never larger than the parent along either side: the fallback then fits inside it.
            w = min(max(1, round(math.sqrt(area * aspect))), px1 - px0)
            h = min(max(1, round(math.sqrt(area / aspect))), py1 - py0)
            cx = px0 + float(xs[a]) * (px1 - px0)
            cy = py0 + float(ys[a]) * (py1 - py0)
            x0 = _shift_inside(round(cx - w / 2), w, 0, width)
            y0 = _shift_inside(round(cy - h / 2), h, 0, height)
            box = (x0, y0, x0 + w, y0 + h)
            score = float(box_overlap(torch.tensor(box, dtype=torch.float64), parent_t, o.overlap))
            if score >= o.min_overlap:
                return box
            if best is None or score > best[0]:
                best = (score, box)
        assert best is not None
        self.fallbacks += 1
        x0, y0, x1, y1 = best[1]
        w, h = x1 - x0, y1 - y0
        # Inside the parent as far as it fits; the parent lies inside the image, so the result does too.
        x0 = min(max(_shift_inside(x0, w, px0, px1), 0), width - w)
        y0 = min(max(_shift_inside(y0, h, py0, py1), 0), height - h)
        return (x0, y0, x0 + w, y0 + h)
