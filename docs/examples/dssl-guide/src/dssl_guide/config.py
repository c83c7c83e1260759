"""Options of this package's components: pydantic models whose defaults are the method's.

dssl validates ``--set objective.options.KEY=VALUE`` (and the other kinds' options) against these models before
anything is built, and imports this module to do so: keep torch out of it.
"""

from __future__ import annotations

from dssl.plugin import DenseEvalOptions
from pydantic import BaseModel, ConfigDict, Field, model_validator


class GuideObjectiveOptions(BaseModel):
    """Options of the guide objective (``--set objective.options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    projector_dim: int = Field(64, gt=0, description="Output width of the projector.")
    temperature: float = Field(0.1, gt=0, description="Scale of the cosine loss.")


class GuideAugmentationOptions(BaseModel):
    """Options of the guide augmentation (``--set augmentation.options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, gt=0, multiple_of=8, description="Side of the square views (a multiple of the patch size).")
    min_scale: float = Field(0.3, gt=0, le=1, description="Smallest crop area, as a fraction of the image.")


class GuideEvaluatorOptions(DenseEvalOptions):
    """Options of the guide evaluator (``--set evaluator_options.guide.KEY=VALUE``): the extraction sizes and the
    absent-class convention of ``DenseEvalOptions``; add the protocol's own settings here."""


class GuideDatasetOptions(BaseModel):
    """Options of the guide dataset (``--set dataset.options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, gt=0, multiple_of=16, description="Side of the square images, in pixels.")
    num_train: int = Field(256, gt=0, description="Images in the train split.")
    num_val: int = Field(64, gt=0, description="Images in the val split.")
    seed: int = Field(0, ge=0, description="Dataset seed; train and val are distinct streams of it.")


class GuideBackboneOptions(BaseModel):
    """Options of the guide backbone (``--set backbone.options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    patch_size: int = Field(16, gt=0, description="Side of the square patches, in pixels.")
    embed_dim: int = Field(64, gt=0, description="Token width.")
    depth: int = Field(2, gt=0, description="Transformer blocks.")
    num_heads: int = Field(4, gt=0, description="Attention heads; they divide embed_dim.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GuideBackboneOptions:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} does not divide embed_dim {self.embed_dim}")
        return self
