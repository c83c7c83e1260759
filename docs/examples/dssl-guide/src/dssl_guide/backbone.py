"""The guide backbone: a small transformer on image patches, written from scratch (an example to replace).

A backbone turns ImageNet-normalised images ``(B, 3, H, W)`` (sides multiples of ``patch_size``) into a
``dssl.plugin.TokenOutput``: prefix tokens (a class token, then the ``extra_tokens`` an objective asked for) and
patch tokens on the ``(H / p, W / p)`` grid, all after the final norm. It takes an optional patch ``mask`` (masked
patches are replaced by a learnable mask token), offers ``features(images) -> (B, h, w, D)`` for the evaluators and
``config()`` for checkpoints. The registry names a factory ``(*, name, timm_name, img_size, extra_tokens,
**options)``; dssl's own ViT (``dssl.plugin.build_vit``) is the reference implementation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from dssl.plugin import TokenOutput
from torch import nn


class GuideBackbone(nn.Module):
    """Patch embedding, learned position embeddings (resampled for other sizes), pre-norm transformer blocks.

    Args:
        img_size: The size the position embeddings are learned for (other sizes are resampled).
        extra_tokens: Extra learnable prefix tokens after the class token (an objective's, e.g. UDI's).
        patch_size: Side of the square patches.
        embed_dim: Token width ``D``.
        depth: Transformer blocks.
        num_heads: Attention heads (divides ``embed_dim``).
    """

    def __init__(
        self, *, img_size: int, extra_tokens: int, patch_size: int, embed_dim: int, depth: int, num_heads: int
    ) -> None:
        super().__init__()
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.img_size, self.num_extra, self.depth, self.num_heads = img_size, extra_tokens, depth, num_heads
        grid = max(1, img_size // patch_size)
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, embed_dim, grid, grid) * 0.02)
        self.prefix_tokens = nn.Parameter(torch.randn(1, 1 + extra_tokens, embed_dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        block = nn.TransformerEncoderLayer(
            embed_dim, num_heads, 4 * embed_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: torch.Tensor, *, mask: torch.Tensor | None = None) -> TokenOutput:
        """Tokens of ``images`` ``(B, 3, H, W)``; ``mask`` ``(B, h * w)`` bool marks patches to hide."""
        patches = self.patch_embed(images)  # (B, D, h, w)
        grid = (patches.shape[-2], patches.shape[-1])
        position = F.interpolate(self.pos_embed, size=grid, mode="bicubic", align_corners=False)
        patches = patches.flatten(2).transpose(1, 2)  # (B, N, D)
        if mask is not None:
            patches = torch.where(mask[..., None], self.mask_token.to(patches.dtype), patches)
        patches = patches + position.flatten(2).transpose(1, 2)
        prefix = self.prefix_tokens.expand(patches.shape[0], -1, -1)
        tokens = self.norm(self.blocks(torch.cat([prefix, patches], dim=1)))
        return TokenOutput(
            prefix=tokens[:, : prefix.shape[1]],
            patches=tokens[:, prefix.shape[1] :],
            grid=grid,
            num_extra=self.num_extra,
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen dense features the evaluators use: the final patch tokens as a map ``(B, h, w, D)``."""
        return self(images).patch_map()

    def config(self) -> dict[str, Any]:
        """Constructor arguments, stored in checkpoints (``extra_tokens`` is read back by ``--init runs:/ID``)."""
        return {
            "img_size": self.img_size,
            "extra_tokens": self.num_extra,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
        }


def build_backbone(
    *, name: str, timm_name: str | None = None, img_size: int = 224, extra_tokens: int = 0, **options: Any
) -> GuideBackbone:
    """The backbone factory the registry names (``name``/``timm_name`` are for factories that serve several)."""
    return GuideBackbone(img_size=img_size, extra_tokens=extra_tokens, **options)
