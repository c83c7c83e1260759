"""The backbone contract: what every backbone returns (:class:`TokenOutput`) and offers (:class:`Backbone`).

A backbone turns ImageNet-normalised images ``(B, 3, H, W)`` into tokens on a patch grid ``(h, w) = (H / p,
W / p)``: prefix tokens (class token, registers, extra learnable tokens an objective asked for) and patch
tokens. It is registered with a factory ``(*, name, timm_name, img_size, extra_tokens, **options) -> nn.Module``
(see :func:`dssl.backbones.vit.build_vit`). This module imports torch but not timm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Backbone", "TokenOutput"]


@dataclass
class TokenOutput:
    """What a backbone's forward returns: its tokens after the final norm, split by role.

    Every backbone returns one (dssl's ViT and any plugin backbone): objectives read ``patches``, ``grid`` and
    ``cls`` (and ``extra`` when they asked for extra tokens), so all of them come after the final norm, as a
    ViT's head would see them.

    Attributes:
        prefix: ``(B, P + E, D)`` timm's prefix tokens (class token, then registers), then the ``E`` extra
            tokens.
        patches: ``(B, N, D)`` patch tokens in row-major grid order; ``N = h * w``, or the number of kept
            patches when masked patches were dropped (kept patches stay in grid order).
        grid: ``(h, w)`` patch grid of the input images (also when patches were dropped).
        num_extra: ``E``, the number of extra tokens at the end of ``prefix``.
    """

    prefix: Tensor
    patches: Tensor
    grid: tuple[int, int]
    num_extra: int = 0

    @property
    def cls(self) -> Tensor:
        """``(B, D)`` the class token."""
        return self.prefix[:, 0]

    @property
    def extra(self) -> Tensor:
        """``(B, E, D)`` the extra tokens (``E`` may be 0)."""
        return self.prefix[:, self.prefix.shape[1] - self.num_extra :]

    def patch_map(self) -> Tensor:
        """``(B, h, w, D)`` the patch tokens as a map; only when no patch was dropped."""
        h, w = self.grid
        if self.patches.shape[1] != h * w:
            raise ValueError(f"{self.patches.shape[1]} patch tokens do not fill the {h}x{w} grid (dropped?)")
        return self.patches.reshape(self.patches.shape[0], h, w, self.patches.shape[2])


@runtime_checkable
class Backbone(Protocol):
    """What the engine, the objectives and the evaluators use of a backbone (an ``nn.Module``).

    Attributes:
        patch_size: Side ``p`` of the square patches, in pixels; image sides must be multiples of it.
        embed_dim: Token width ``D``.
    """

    patch_size: int
    embed_dim: int

    def __call__(self, images: Tensor, *, mask: Tensor | None = None) -> TokenOutput:
        """Tokens of ``images`` ``(B, 3, H, W)``.

        Args:
            images: ImageNet-normalised images, ``H`` and ``W`` multiples of ``patch_size``.
            mask: Optional ``(B, h * w)`` bool, ``True`` = masked patch (iBOT/MAE-style objectives).

        Returns:
            The tokens after the final norm; ``prefix`` holds ``extra_tokens`` extra tokens at its end.
        """
        ...

    def features(self, images: Tensor) -> Tensor:
        """Frozen dense features for the evaluators: ``(B, 3, H, W)`` -> ``(B, h, w, D)``."""
        ...
