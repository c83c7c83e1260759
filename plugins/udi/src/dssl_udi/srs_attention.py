"""UDI's extra masked-attention layer: patch representations at the SRS positions (``MaskedAttention`` +
``UDIWrapper`` in ISL-CV/udi).

Queries are interpolated at the sampled positions by the sampling maps, keys and values are all patch tokens
of the last block (before the backbone's final norm), and the interpolated feature is added back::

    x̂ = LN_1(x)                          x: (B, N, C) patch tokens of the last block
    q, k, v = qkv(x̂)
    q_s = M q                             M: (B, S, N) sampling map (one-hot or bilinear rows)
    y = LN_2(proj(softmax(q_s kᵀ / √d) v) + M x)

Heads and width come from the backbone (the official code hard-codes 6 heads and 384 for ViT-S). A zero map
row (an invalid sample) gives a zero query, hence uniform attention — the same as the official ``1e-9`` fill
of those rows; such rows are masked out by the loss.

Example:
    >>> layer = SRSAttention(192, num_heads=3)
    >>> y = layer(torch.randn(2, 16, 192), torch.eye(16)[:4].expand(2, 4, 16))
    >>> tuple(y.shape)
    (2, 4, 192)
"""

from __future__ import annotations

import torch.nn.functional as F
from dssl.plugin import trunc_normal_init
from torch import Tensor, nn

__all__ = ["SRSAttention"]


class SRSAttention(nn.Module):
    """Masked attention producing ``S`` patch representations per image from sampling maps.

    Args:
        dim: Token width ``C`` (the backbone's ``embed_dim``).
        num_heads: Attention heads (the backbone's ``num_heads``).
        qkv_bias: Bias of the qkv projection (official: True).

    Shapes:
        ``tokens (B, N, C)``, ``maps (B, S, N)`` -> ``(B, S, C)``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.apply(trunc_normal_init)

    def forward(self, tokens: Tensor, maps: Tensor) -> Tensor:
        """Patch representations at the positions described by ``maps`` (see the module docstring)."""
        b, n, c = tokens.shape
        maps = maps.to(tokens.dtype)
        qkv = self.qkv(self.norm1(tokens)).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, d)
        q_s = maps.unsqueeze(1) @ q  # (B, H, S, d)
        out = F.scaled_dot_product_attention(q_s, k, v, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, maps.shape[1], c)
        return self.norm2(self.proj(out) + maps @ tokens)
