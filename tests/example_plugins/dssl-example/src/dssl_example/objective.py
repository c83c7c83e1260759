"""A small objective written only against dssl's public contract."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dssl.plugin import Objective
from torch import nn

from dssl_example.config import ClsMSEOptions


class ClsMSEObjective(Objective):
    """Predict view 2's normalised ``[CLS]`` from view 1's (and back), BYOL-style, without an EMA."""

    def __init__(self, backbone: nn.Module, options: ClsMSEOptions, *, total_steps: int) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        dim = backbone.embed_dim
        self.predictor = nn.Sequential(
            nn.Linear(dim, options.predictor_hidden), nn.GELU(), nn.Linear(options.predictor_hidden, dim)
        )

    def forward(self, batch, *, step: int) -> dict[str, torch.Tensor]:
        cls_a, cls_b = (self.backbone(view).cls for view in batch.crops[:2])
        pred_a, pred_b = (
            F.normalize(self.predictor(cls_a), dim=-1),
            F.normalize(self.predictor(cls_b), dim=-1),
        )
        target_a, target_b = F.normalize(cls_a.detach(), dim=-1), F.normalize(cls_b.detach(), dim=-1)
        loss = (pred_a - target_b).pow(2).sum(-1).mean() + (pred_b - target_a).pow(2).sum(-1).mean()
        return {"loss": loss}
