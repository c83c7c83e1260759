"""Options shared by the dense evaluators (torch-free: imported when configs are validated).

Sizes are ``(height, width)``; a single integer means a square ``(s, s)`` resize that does not keep the
aspect ratio, as NeCo/Leopart's ``Resize((448, 448))``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]

#: Each absent-class convention in words (shown by the leaderboard; the computation is
#: ``dssl.evaluators.confusion.iou_per_class``).
ABSENT_CLASS_CONVENTIONS: dict[str, str] = {
    "exclude_no_gt": "classes without ground-truth pixels leave the mean",
    "exclude_empty": "classes with neither ground truth nor prediction leave the mean (mmseg nanmean)",
    "zero": "every class in the mean, absent ones 0 (NeCo/Leopart/Hummingbird PredsmIoU)",
}
Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class DenseEvalOptions(BaseModel):
    """How frozen dense features and masks are extracted and scored.

    Attributes:
        input_size: Size images are resized to (bilinear, antialiased) before the feature function;
            ``None`` keeps the dataset's native size (then every image must have the same size).
            Masks follow with nearest-neighbour resizing. NeCo/Leopart: 448.
        mask_size: Resolution at which predictions are scored (masks nearest-resized from the input
            size); ``None`` scores at the full input resolution. NeCo/Leopart: 100 (lowers numbers).
        feature_batch_size: Images per call of the feature function.
        feature_dtype: Storage dtype of the in-memory feature cache; ``"float16"`` halves memory at a
            tiny numerical cost (recorded in the settings).
        feature_store: Where the feature cache lives: ``"memory"`` (default) or ``"disk"``, an unlinked
            temporary file under ``$TMPDIR`` mapped into memory (``torch.from_file``), which the OS pages in
            and out, so that a split larger than RAM can be cached (Pascal VOC trainaug at 448 px with
            ViT-S/16: 10,582 x 784 x 384 float32 = 12.7 GB). The numbers are identical; only speed and
            resident memory change.
        num_workers: ``DataLoader`` workers for reading the datasets during feature extraction.
        absent_classes: How classes without ground-truth pixels enter the mean IoU (see
            ``dssl.evaluators.confusion.AbsentClassPolicy``): ``"exclude_no_gt"`` (default) leaves them
            out; ``"zero"`` reproduces NeCo/Hummingbird (they score 0 and stay in the mean).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: Size | None = None
    mask_size: Size | None = None
    feature_batch_size: PositiveInt = 32
    feature_dtype: Literal["float32", "float16"] = "float32"
    feature_store: Literal["memory", "disk"] = "memory"
    num_workers: Annotated[int, Field(ge=0)] = 0
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] = "exclude_no_gt"


class ImageEvalOptions(BaseModel):
    """How frozen image-level features are extracted (kNN / linear classification).

    Attributes:
        input_size: Size images are resized to (bilinear, antialiased) before the image-feature function;
            ``None`` keeps the dataset's native size.
        feature_batch_size: Images per call of the feature function.
        num_workers: ``DataLoader`` workers for reading the datasets during feature extraction.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: Size | None = None
    feature_batch_size: PositiveInt = 64
    num_workers: Annotated[int, Field(ge=0)] = 0
