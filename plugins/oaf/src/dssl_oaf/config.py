"""Options of the Object-Aware Filter (torch-free) and its CoTAP filter spec.

The paper's OAF maps patch embeddings onto "learnable prototypes of objects via cross-attention" [abstract of
arXiv 2509.09429]; K, the attention form, the output and the temperature are not public, so every default here
is a **documented guess** of the reconstruction in methods.md §1.4.

Example:
    >>> OAFOptions(num_prototypes=32).output
    'values'
"""

from __future__ import annotations

from typing import Literal

from dssl_cotap.filters import FilterSpec
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OAF_FILTER", "OAFOptions"]


class OAFOptions(BaseModel):
    """Object-Aware Filter options (all guesses; see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    num_prototypes: int = Field(
        64, gt=1, description="K learnable object prototypes (unknown; guess 64, > the 27 COCO-Stuff classes)."
    )
    attn_dim: int | None = Field(
        None, gt=0, description="Width D_a of queries/keys (and values); None: the projected patch width."
    )
    num_heads: int = Field(1, ge=1, description="Attention heads (unknown; guess single-head). Must divide D_a.")
    output: Literal["values", "assignment"] = Field(
        "values",
        description="'values' (variant A): o_i = Σ_m a_im W_v P_m; 'assignment' (variant B): o_i = a_i, the soft "
        "prototype assignment (head-averaged). methods.md §1.4; unknown which; guess A.",
    )
    combine: Literal["replace", "concat"] = Field(
        "replace", description="OAF output replaces the patch embedding, or is concatenated to it (unknown; guess)."
    )
    similarity: Literal["cosine"] = Field(
        "cosine",
        description="<q, k> of L2-normalised queries and keys (a prototype softmax, as DINO's head). The scaled "
        "dot product ('dot', removed in issue 17) of these small projections of unit-norm inputs is ~1e-3 at "
        "random init: every patch attends uniformly, the filter outputs one vector for all patches, CoTAP's "
        "targets all tie (AP = 1, loss and gradient 0) and nothing ever learns.",
    )
    temperature: float = Field(
        0.1, gt=0.0, description="Softmax temperature of the cosine attention (guess: that of DINO's prototypes)."
    )

    @model_validator(mode="after")
    def _check_heads(self) -> OAFOptions:
        if self.attn_dim is not None and self.attn_dim % self.num_heads:
            raise ValueError(f"attn_dim {self.attn_dim} is not divisible by num_heads {self.num_heads}")
        return self


OAF_FILTER = FilterSpec(
    factory="dssl_oaf.filter:ObjectAwareFilter",
    options="dssl_oaf.config:OAFOptions",
    summary="Object-Aware Filter: patch queries attend to learnable object prototypes (reconstructed)",
)
