"""Options of PaKA's augmentation (torch-free): the core multi-crop plus the high-overlap local rule.

PaKA ("Global-Local Intersection Maximization" and an "augmentation-free teacher", paper Sec. 4 as cited by
``lightly-ai/lightly-train`` ``constrained_crop.py``; methods.md §2.3) is a reconstruction here:

* ``return_clean`` defaults to True: the teacher sees a clean rendering of each global crop (same box and
  flip, no photometric change).
* Student local ``k`` is sampled around its parent global ``k % n_global`` and kept only when its overlap
  with the parent reaches ``min_overlap``. The paper reportedly says "IoU"; LightlyTrain argues a literal IoU
  between a small local and a large global is tiny and uses containment (fraction of the local inside the
  global), with ratio 0.9. Both are offered; containment is the default.

Example:
    >>> PaKACropOptions(global_size=224, local_size=98).overlap
    'containment'
"""

from __future__ import annotations

from typing import Literal

from dssl.plugin import MultiCropOptions
from pydantic import Field

__all__ = ["PaKACropOptions"]


class PaKACropOptions(MultiCropOptions):
    """Multi-crop options (inherited, DINO defaults) plus PaKA's high-overlap local sampling."""

    return_clean: bool = Field(
        True, description="Return clean (photometrically unaugmented) renderings for the teacher [3P, paper Sec. 4]."
    )
    overlap: Literal["containment", "iou"] = Field(
        "containment",
        description="Overlap of a local with its parent global: area(L∩G)/area(L) [3P lightly-train] or IoU "
        "[the paper's word per lightly-train; unverified].",
    )
    min_overlap: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Accept a local when its overlap reaches this ratio (m = 0.9) [3P lightly-train].",
    )
    max_attempts: int = Field(
        10,
        ge=1,
        le=10,
        description="Proposals per local before the fallback (at most 10: the draws MultiCrop already makes) [INF].",
    )
    local_scale_of: Literal["image", "parent"] = Field(
        "image",
        description="local_scale is a fraction of the image area (MultiCrop/NeCo) or of the parent global's area "
        "(lightly-train, 0.05-0.40) [INF].",
    )
