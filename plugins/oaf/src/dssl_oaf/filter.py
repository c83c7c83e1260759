"""Object-Aware Filter (OAF): patches re-expressed through learnable object prototypes by cross-attention.

Paper: Wen et al., "Semantic Concentration for Self-Supervised Dense Representations Learning", TPAMI 2025,
arXiv 2509.09429: "patches are represented by learnable prototypes of objects via cross-attention" (abstract).
Reconstruction (methods.md §1.4): for L2-normalised patch embeddings ``z_i`` and prototypes ``P ∈ R^{K×D}``::

    q_i  = W_q z_i,   k_m = W_k P_m,   v_m = W_v P_m          (per head, width D_a / H)
    a_im = softmax_m(cos(q_i, k_m) / temperature)            (temperature 0.1)
    o_i  = Σ_m a_im v_m   (output "values", heads concatenated)   or   o_i = mean_h a_i   ("assignment")

The teacher's copy is the EMA of this module (cotap's EMATeacher covers the filter). The filter has no own
loss: it learns only through CoTAP's gradients. A scaled dot-product attention (``similarity="dot"``) was
removed: at random init it is uniform, so the filter's output is constant and CoTAP's term identically 0.

Example:
    >>> import torch
    >>> f = ObjectAwareFilter(16, OAFOptions(num_prototypes=4))
    >>> f(torch.randn(2, 5, 16)).shape, f.attention(torch.randn(2, 5, 16)).shape
    (torch.Size([2, 5, 16]), torch.Size([2, 1, 5, 4]))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dssl_oaf.config import OAFOptions

__all__ = ["ObjectAwareFilter"]


class ObjectAwareFilter(nn.Module):
    """Cross-attention from patch queries to prototype keys/values (module docstring).

    Args:
        in_dim: Width ``D`` of the (projected, normalised) patch embeddings.
        options: :class:`~dssl_oaf.config.OAFOptions` (``None``: defaults).

    Attributes:
        prototypes: ``(K, D)`` learnable object prototypes, N(0, 1/D) init (unit expected norm, like the
            normalised patch embeddings they are compared with through W_q / W_k).
        q, k, v: ``Linear(D, D_a)`` projections (no bias on q/k).
        out_dim: Width of the output: ``D_a`` ("values"), ``K`` ("assignment"), plus ``D`` with "concat".
    """

    def __init__(self, in_dim: int, options: OAFOptions | None = None) -> None:
        super().__init__()
        o = options or OAFOptions()
        self.options = o
        attn_dim = o.attn_dim or in_dim
        if attn_dim % o.num_heads:
            raise ValueError(f"attention width {attn_dim} is not divisible by num_heads {o.num_heads}")
        self.num_heads = o.num_heads
        self.head_dim = attn_dim // o.num_heads
        self.temperature = o.temperature
        self.prototypes = nn.Parameter(torch.randn(o.num_prototypes, in_dim) / math.sqrt(in_dim))
        self.q = nn.Linear(in_dim, attn_dim, bias=False)
        self.k = nn.Linear(in_dim, attn_dim, bias=False)
        self.v = nn.Linear(in_dim, attn_dim)
        width = attn_dim if o.output == "values" else o.num_prototypes
        self.out_dim = width + (in_dim if o.combine == "concat" else 0)

    def _heads(self, x: Tensor) -> Tensor:
        """``(..., L, D_a) -> (..., H, L, D_a / H)``."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)

    def attention(self, z: Tensor) -> Tensor:
        """Attention of every patch over the prototypes.

        Args:
            z: ``(B, N, D)`` patch embeddings.

        Returns:
            ``(B, H, N, K)``; every row (over K) sums to one.
        """
        q = self._heads(self.q(z))  # (B, H, N, d)
        k = self._heads(self.k(self.prototypes))  # (H, K, d)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return torch.softmax(q @ k.transpose(-1, -2) / self.temperature, dim=-1)

    def forward(self, z: Tensor) -> Tensor:
        """Object-based representation of each patch.

        Args:
            z: ``(B, N, D)`` patch embeddings.

        Returns:
            ``(B, N, out_dim)``.
        """
        a = self.attention(z)  # (B, H, N, K)
        if self.options.output == "values":
            v = self._heads(self.v(self.prototypes))  # (H, K, d)
            o = (a @ v).transpose(1, 2).flatten(2)  # (B, N, D_a)
        else:
            o = a.mean(dim=1)  # (B, N, K)
        return torch.cat([z, o], dim=-1) if self.options.combine == "concat" else o
