"""STELLAR's online clustering head (CAPI-style): predictor MLP, normalised projection onto free prototypes.

``OnlineClustering`` of ``microsoft/STELLAR``: ``x -> MLP -> L2-normalise -> Linear(prototype_dim, K,
bias=False)`` with prototypes initialised N(0, 1) and **not** normalised; logits in float32. Targets are
:func:`~dssl.layers.sinkhorn.sinkhorn_knopp` of the detached logits over all tokens of the batch.

Example:
    >>> head = OnlineClustering(8, num_clusters=32, prototype_dim=4, hidden_dim=16)
    >>> logits = head(torch.randn(2, 5, 8))
    >>> logits.shape, logits.dtype, head.targets(logits).shape
    (torch.Size([2, 5, 32]), torch.float32, torch.Size([2, 5, 32]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dssl.plugin import MLP, sinkhorn_knopp
from torch import Tensor, nn

__all__ = ["OnlineClustering"]


class OnlineClustering(nn.Module):
    """Prototype scores of tokens and their balanced (Sinkhorn) targets.

    Args:
        in_dim: Token width ``D``.
        num_clusters: ``K`` prototypes (16384).
        prototype_dim: Predictor output / prototype width (256).
        hidden_dim: Predictor hidden width (2048).
        predictor_layers: Linear layers of the predictor (2: ``D -> hidden -> prototype_dim``).
        target_temp: Temperature of the Sinkhorn targets (0.06).
        sk_iterations: Sinkhorn–Knopp iterations (3).
        sk_scale: Column-sum exponent of Sinkhorn–Knopp (1.0).
    """

    def __init__(
        self,
        in_dim: int,
        *,
        num_clusters: int = 16384,
        prototype_dim: int = 256,
        hidden_dim: int = 2048,
        predictor_layers: int = 2,
        target_temp: float = 0.06,
        sk_iterations: int = 3,
        sk_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.predictor = MLP(in_dim, out_dim=prototype_dim, hidden_dim=hidden_dim, nlayers=predictor_layers)
        self.prototypes = nn.Linear(prototype_dim, num_clusters, bias=False)
        nn.init.normal_(self.prototypes.weight, std=1.0)
        self.target_temp = target_temp
        self.sk_iterations = sk_iterations
        self.sk_scale = sk_scale

    def forward(self, tokens: Tensor) -> Tensor:
        """``(..., D) -> (..., K)`` float32 logits (cosine-like scores times the prototype norms)."""
        x = F.normalize(self.predictor(tokens), dim=-1, eps=1e-7)
        # fp32 matmul: the logits are divided by 0.06 / 0.12 downstream, where bf16 rounding is amplified.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(x.float(), self.prototypes.weight.float())

    @torch.no_grad()
    def targets(self, logits: Tensor) -> Tensor:
        """Sinkhorn–Knopp assignments of ``logits`` ``(..., K)`` over all leading positions, same shape."""
        flat = logits.detach().reshape(-1, logits.shape[-1]) / self.target_temp
        q = sinkhorn_knopp(flat, self.sk_iterations, scale=self.sk_scale)
        return q.reshape(logits.shape)
