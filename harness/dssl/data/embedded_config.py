"""Options of the embedded procedural dataset, torch- and numpy-free so configs validate fast.

The dataset itself is built by ``dssl.data.embedded.build_embedded(options, split=...)``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EmbeddedOptions(BaseModel):
    """Settings of ``dssl.data.embedded.EmbeddedDataset``; every field changes the data.

    Attributes:
        size: Image side in pixels.
        num_train: Number of training images.
        num_val: Number of validation images.
        seed: Dataset seed (train and val are distinct streams of it).
    """

    model_config = ConfigDict(extra="forbid")

    size: int = Field(
        96,
        ge=32,
        multiple_of=8,
        description="Image side in pixels (square images); at least 32 and a multiple of 8 so that "
        "patch grids of 8 or 16 pixels tile it (96 fits both).",
    )
    num_train: int = Field(2048, gt=0, description="Number of images in the train split.")
    num_val: int = Field(256, gt=0, description="Number of images in the val split.")
    seed: int = Field(
        0,
        ge=0,
        description="Dataset seed; image i of a split depends only on (seed, split, i, size).",
    )
