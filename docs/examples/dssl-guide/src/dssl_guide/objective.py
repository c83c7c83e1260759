"""The guide objective: cosine invariance of corresponding patches and of whole views (an example to replace).

The engine builds it as ``GuideObjective(backbone, options, total_steps=T)`` and, every step, calls
``objective(batch, step=step)`` and optimises the returned ``"loss"``; ``dssl.plugin.Objective`` documents the
rest of the contract (parameter groups, the per-step hooks, the backbone that is evaluated, checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dssl.plugin import Objective, ViewBatch, patch_correspondence
from torch import nn

from dssl_guide.config import GuideObjectiveOptions


def _invariance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2 - cos(a, sg(b)) - cos(sg(a), b)`` per row of ``(..., D)`` unit vectors: a stop-gradient target on each
    side (SimSiam's trick) keeps the example from collapsing trivially."""
    return 2 - (a * b.detach()).sum(-1) - (a.detach() * b).sum(-1)


class GuideObjective(Objective):
    """Pull together the projections of patches that show the same image point in the two global views, and the
    views' pooled projections.

    Args:
        backbone: The student backbone (trained); its output is a ``dssl.plugin.TokenOutput``.
        options: The validated :class:`GuideObjectiveOptions`.
        total_steps: Optimisation steps of the run (for schedules).
    """

    def __init__(self, backbone: nn.Module, options: GuideObjectiveOptions, *, total_steps: int) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        dim = backbone.embed_dim
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, options.projector_dim))

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The keys of :meth:`forward`'s output that make the loss (the conformance suite checks they are there)."""
        return ("dense", "global")

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, torch.Tensor]:
        """Losses of a batch of views (globals first: ``batch.crops[:batch.n_global]``, each ``(B, 3, h, w)``).

        Returns:
            ``loss`` (optimised), its terms ``dense`` and ``global``, and ``overlap``: the fraction of view-2
            patches that view 1 covers (logged).
        """
        out_a, out_b = (self.backbone(view) for view in batch.globals[:2])
        za = F.normalize(self.projector(out_a.patches), dim=-1)  # (B, Na, P)
        zb = F.normalize(self.projector(out_b.patches), dim=-1)  # (B, Nb, P)
        # For each patch of view 2, the patch of view 1 over the same image point (boxes and flips: batch geometry).
        index, valid = patch_correspondence(
            batch.boxes[:, 0], batch.flips[:, 0], out_a.grid, batch.boxes[:, 1], batch.flips[:, 1], out_b.grid
        )
        matched = za.gather(1, index[..., None].expand(-1, -1, za.shape[-1]))
        weights = valid.to(zb.dtype)
        dense = (_invariance(matched, zb) * weights).sum() / weights.sum().clamp(min=1.0)
        pooled = _invariance(F.normalize(za.mean(dim=1), dim=-1), F.normalize(zb.mean(dim=1), dim=-1)).mean()
        loss = (dense + pooled) / (2 * self.options.temperature)
        return {"loss": loss, "dense": dense, "global": pooled, "overlap": valid.float().mean()}
