"""ViT backbones on top of timm's ``VisionTransformer``, with the token contract dssl's objectives use.

The transformer itself (patch embedding, position embeddings, blocks, final norm) is timm's; this
module only re-assembles its forward so that objectives get what timm's forward does not offer:

* patch masking, either with a learnable mask token (iBOT/BEiT) or by dropping masked patches (MAE);
* extra learnable prefix tokens with their own position embeddings (UDI's second class token,
  STELLAR's sparse tokens), attending in every block like the class token;
* arbitrary input sizes (multiples of the patch size), the learned position grid being resampled;
* the token sequence between stages (:meth:`ViTBackbone.prepare_tokens`, :meth:`ViTBackbone.run_blocks`,
  :meth:`ViTBackbone.split_tokens`) for objectives that run their own layers on intermediate tokens.

Token layout of the sequence: ``[class token, timm registers..., extra tokens..., patches...]``.

Example:
    >>> backbone = build_vit(name="vit_t16", img_size=64, extra_tokens=1)
    >>> out = backbone(torch.randn(2, 3, 48, 64))
    >>> out.grid, tuple(out.patches.shape), tuple(out.extra.shape)
    ((3, 4), (2, 12, 192), (2, 1, 192))
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from pydantic import ValidationError
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dssl.backbones.tokens import TokenOutput
from dssl.backbones.vit_config import ViTOptions
from dssl.errors import ConfigError

#: Short names users type -> timm architecture names (all present in timm 1.0.31).
ALIASES: dict[str, str] = {
    "vit_t16": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
    "vit_s8": "vit_small_patch8_224",
    "vit_b8": "vit_base_patch8_224",
    "vit_s14_reg": "vit_small_patch14_reg4_dinov2",
}

_MASK_MODES = ("token", "drop")
# timm.create_model arguments that the backbone sets itself; timm_args may not override them.
_DSSL_TIMM_ARGS = frozenset({"pretrained", "num_classes", "dynamic_img_size", "img_size", "drop_path_rate"})


def resolve_model_name(model_name: str) -> str:
    """Map an alias or a timm name (optionally ``arch.pretrained_tag``) to the timm name to build.

    Raises:
        ConfigError: Unknown name, with close matches among the aliases and timm's ``vit_*`` models.
    """
    if model_name in ALIASES:
        return ALIASES[model_name]
    if timm.is_model(model_name.split(".", 1)[0]):
        return model_name
    candidates = sorted(set(ALIASES) | set(timm.list_models("vit_*")))
    close = difflib.get_close_matches(model_name, candidates, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"aliases: {', '.join(ALIASES)}"
    raise ConfigError(f"unknown ViT backbone '{model_name}'; {hint}")


class ViTBackbone(nn.Module):
    """A timm ViT returning class, register, extra and patch tokens, with optional patch masking.

    Args:
        model_name: An alias of :data:`ALIASES` or a timm ViT name (``vit_small_patch16_224`` or with a
            pretrained tag, ``vit_small_patch16_224.augreg_in21k``; the tag only matters for ``--init timm``).
        img_size: Resolution the learned position-embedding grid is made for; a multiple of the patch size.
        extra_tokens: Number of extra learnable prefix tokens, each with its own learnable position embedding.
        drop_path_rate: Stochastic depth rate of the last block (linear decay over depth), in [0, 1).
        feature_layers: Default blocks of :meth:`features` (negative indices count from the end).
        mask_mode: Default effect of a mask in :meth:`forward`: ``"token"`` (mask token) or ``"drop"``.
            Only ``"token"`` creates the ``mask_token`` parameter.
        timm_args: Architecture arguments given to ``timm.create_model`` over those of ``model_name``
            (``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ...): a smaller timm ViT, e.g. the CPU
            track's ``vit_p8`` alias.

    Attributes:
        vit: The timm ``VisionTransformer`` (``num_classes=0``, ``dynamic_img_size=True``).
        patch_size, embed_dim, num_heads, depth: Architecture of ``vit``.
        num_prefix_tokens: timm's prefix tokens (class token + registers), without the extra tokens.
        num_extra_tokens: Number of extra tokens.
        mask_token: ``(1, 1, D)`` learnable mask token (zeros at init, as iBOT), or ``None`` in drop mode.
        extra_tokens: ``(1, E, D)`` extra tokens shared across the batch, or ``None`` when ``E == 0``.
        extra_pos_embed: ``(1, E, D)`` their position embeddings, or ``None`` when ``E == 0``.
    """

    def __init__(
        self,
        model_name: str,
        *,
        img_size: int = 224,
        extra_tokens: int = 0,
        drop_path_rate: float = 0.0,
        feature_layers: Sequence[int] | None = None,
        mask_mode: str = "token",
        timm_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if mask_mode not in _MASK_MODES:
            raise ConfigError(f"mask_mode must be one of {', '.join(_MASK_MODES)}, got '{mask_mode}'")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if extra_tokens < 0:
            raise ConfigError(f"extra_tokens must be >= 0, got {extra_tokens}")
        if img_size <= 0:
            raise ConfigError(f"img_size must be positive, got {img_size}")
        self.model_name = model_name
        self.timm_name = resolve_model_name(model_name)
        self.timm_args: dict[str, Any] = dict(timm_args or {})
        reserved = sorted(
            {"pretrained", "num_classes", "dynamic_img_size", "img_size", "drop_path_rate"} & set(self.timm_args)
        )
        if reserved:
            raise ConfigError(f"timm_args may not set {', '.join(reserved)} (dssl sets them)")
        try:
            vit = timm.create_model(
                self.timm_name,
                pretrained=False,
                num_classes=0,
                dynamic_img_size=True,
                img_size=img_size,
                drop_path_rate=drop_path_rate,
                **self.timm_args,
            )
        except TypeError as exc:  # non-ViT constructors reject ViT kwargs such as dynamic_img_size
            raise ConfigError(f"'{self.timm_name}' is not a timm VisionTransformer ({exc})") from exc
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"cannot build timm model '{self.timm_name}': {exc}") from exc
        if not isinstance(vit, VisionTransformer):
            raise ConfigError(f"'{self.timm_name}' is a {type(vit).__name__}, not a timm VisionTransformer")
        # Hybrid (CNN stem) and padded embeddings break the "grid = size / patch" contract.
        if type(vit.patch_embed) is not PatchEmbed or vit.patch_embed.dynamic_img_pad:
            raise ConfigError(f"'{self.timm_name}' has no plain patch embedding (hybrid or padded ViT)")
        if vit.cls_token is None:
            raise ConfigError(f"'{self.timm_name}' has no class token; dssl backbones need one")
        patch_h, patch_w = vit.patch_embed.patch_size
        if patch_h != patch_w:
            raise ConfigError(f"'{self.timm_name}' has non-square patches {patch_h}x{patch_w}")
        if img_size % patch_h:
            raise ConfigError(f"img_size {img_size} is not divisible by patch size {patch_h} of {model_name}")

        self.vit = vit
        self.patch_size: int = patch_h
        self.embed_dim: int = vit.embed_dim
        self.num_heads: int = vit.blocks[0].attn.num_heads
        self.depth: int = len(vit.blocks)
        self.num_prefix_tokens: int = vit.num_prefix_tokens
        self.num_extra_tokens: int = extra_tokens
        self.img_size = img_size
        self.drop_path_rate = drop_path_rate
        self.mask_mode = mask_mode
        self.feature_layers: tuple[int, ...] | None = (
            None if feature_layers is None else self._block_indices(feature_layers)
        )

        self.mask_token: nn.Parameter | None
        if mask_mode == "token":
            self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        else:
            self.register_parameter("mask_token", None)
        self.extra_tokens: nn.Parameter | None
        self.extra_pos_embed: nn.Parameter | None
        if extra_tokens:
            self.extra_tokens = nn.Parameter(trunc_normal_(torch.empty(1, extra_tokens, self.embed_dim), std=0.02))
            # Their own embedding (not the class token's) so several extra tokens start distinguishable.
            self.extra_pos_embed = nn.Parameter(trunc_normal_(torch.empty(1, extra_tokens, self.embed_dim), std=0.02))
        else:
            self.register_parameter("extra_tokens", None)
            self.register_parameter("extra_pos_embed", None)

    # ------------------------------------------------------------------ info

    @property
    def blocks(self) -> nn.Sequential:
        """timm's transformer blocks; each maps ``(B, T, D) -> (B, T, D)``."""
        return self.vit.blocks

    @property
    def norm(self) -> nn.Module:
        """timm's final norm."""
        return self.vit.norm

    @property
    def num_tokens_before_patches(self) -> int:
        """``P + E``: index of the first patch token in the sequence."""
        return self.num_prefix_tokens + self.num_extra_tokens

    def config(self) -> dict[str, Any]:
        """Constructor arguments, stored in checkpoints so that a backbone can be rebuilt."""
        return {
            "model_name": self.model_name,
            "timm_name": self.timm_name,
            "img_size": self.img_size,
            "extra_tokens": self.num_extra_tokens,
            "drop_path_rate": self.drop_path_rate,
            "feature_layers": None if self.feature_layers is None else list(self.feature_layers),
            "mask_mode": self.mask_mode,
            "timm_args": dict(self.timm_args),
        }

    def no_weight_decay(self) -> set[str]:
        """Names of parameters usually excluded from weight decay (embeddings and special tokens)."""
        names = {f"vit.{n}" for n in self.vit.no_weight_decay()}
        names |= {n for n in ("mask_token", "extra_tokens", "extra_pos_embed") if getattr(self, n) is not None}
        return names

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass (saves memory for big ViTs)."""
        self.vit.set_grad_checkpointing(enable)

    def grid_size(self, images: Tensor) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of ``images`` ``(B, 3, H, W)``.

        Raises:
            ConfigError: Wrong layout, or ``H``/``W`` not multiples of the patch size.
        """
        if images.dim() != 4 or images.shape[1] != self.vit.patch_embed.proj.in_channels:
            raise ConfigError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ConfigError(f"image size {height}x{width} is not divisible by patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    # ------------------------------------------------------------------ stages

    def prepare_tokens(
        self, images: Tensor, mask: Tensor | None = None, *, drop_masked: bool | None = None
    ) -> tuple[Tensor, tuple[int, int]]:
        """Embed patches, apply the mask, add position embeddings and prepend the prefix tokens.

        Args:
            images: ``(B, 3, H, W)`` normalised images, ``H`` and ``W`` multiples of the patch size.
            mask: ``(B, N)`` or ``(B, h, w)`` bool, True = masked patch; ``None`` = no masking.
            drop_masked: Remove masked patches (True) or replace them by the mask token (False);
                ``None`` follows ``mask_mode``.

        Returns:
            ``(tokens, grid)``: tokens ``(B, P + E + N, D)`` ready for the first block (``N`` = kept patches
            when dropping), and the patch grid ``(h, w)``.
        """
        grid = self.grid_size(images)
        patches = self.vit.patch_embed(images)  # (B, h, w, D): timm defers flattening in dynamic mode
        batch = patches.shape[0]
        patches = patches.reshape(batch, grid[0] * grid[1], self.embed_dim)
        drop = self.mask_mode == "drop" if drop_masked is None else drop_masked
        if mask is not None:
            mask = self._check_mask(mask, batch, grid).to(patches.device)
            if not drop:
                if self.mask_token is None:
                    raise ConfigError("this backbone was built with mask_mode 'drop' and has no mask token")
                # iBOT order: the mask token replaces the patch embedding, then gets that patch's position.
                patches = torch.where(mask.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)

        prefix_pos, patch_pos = self._position_embeddings(grid)
        if patch_pos is not None:
            patches = patches + patch_pos
        if mask is not None and drop:
            patches = self._drop_masked(patches, mask)

        prefix = [self.vit.cls_token.expand(batch, -1, -1)]
        if self.vit.reg_token is not None:
            prefix.append(self.vit.reg_token.expand(batch, -1, -1))
        prefix_tokens = torch.cat(prefix, dim=1)
        if prefix_pos is not None:
            prefix_tokens = prefix_tokens + prefix_pos
        if self.extra_tokens is not None and self.extra_pos_embed is not None:
            extra = (self.extra_tokens + self.extra_pos_embed).expand(batch, -1, -1)
            prefix_tokens = torch.cat([prefix_tokens, extra.to(prefix_tokens.dtype)], dim=1)

        tokens = torch.cat([prefix_tokens, patches], dim=1)
        tokens = self.vit.pos_drop(tokens)
        tokens = self.vit.norm_pre(tokens)
        return tokens, grid

    def run_blocks(self, tokens: Tensor, start: int = 0, end: int | None = None) -> Tensor:
        """Run blocks ``start..end-1`` (Python slice semantics) on ``tokens`` ``(B, T, D)``."""
        if start == 0 and end is None and not (self.vit.grad_checkpointing and self.training):
            # All blocks in one call of timm's nn.Sequential (the same block calls in the same order): the
            # module that `compile: true` compiles (dssl.engine.compilation), one graph for the whole stack.
            return self.vit.blocks(tokens)
        for block in self.vit.blocks[start:end]:
            tokens = self._run_block(block, tokens)
        return tokens

    def split_tokens(self, tokens: Tensor, grid: tuple[int, int], *, norm: bool = True) -> TokenOutput:
        """Split a sequence ``(B, P + E + N, D)`` into a :class:`TokenOutput`, applying the final norm."""
        if norm:
            tokens = self.vit.norm(tokens)
        first_patch = self.num_tokens_before_patches
        return TokenOutput(
            prefix=tokens[:, :first_patch],
            patches=tokens[:, first_patch:],
            grid=grid,
            num_extra=self.num_extra_tokens,
        )

    def forward(self, images: Tensor, *, mask: Tensor | None = None, drop_masked: bool | None = None) -> TokenOutput:
        """Encode images into tokens.

        Args:
            images: ``(B, 3, H, W)`` normalised images; ``H``, ``W`` multiples of ``patch_size``.
            mask: ``(B, N)`` or ``(B, h, w)`` bool, True = masked patch.
            drop_masked: See :meth:`prepare_tokens`; ``None`` follows ``mask_mode``. Dropping needs the same
                number of masked patches in every image.

        Returns:
            :class:`TokenOutput` with ``prefix`` ``(B, P + E, D)`` and ``patches`` ``(B, N, D)``.
        """
        tokens, grid = self.prepare_tokens(images, mask, drop_masked=drop_masked)
        tokens = self.run_blocks(tokens)
        return self.split_tokens(tokens, grid)

    def features(self, images: Tensor, *, layers: Sequence[int] | None = None) -> Tensor:
        """Dense features for evaluators.

        Args:
            images: ``(B, 3, H, W)`` normalised images.
            layers: Blocks to take patch tokens from (negative = from the end), each normed with the final
                norm; ``None`` = ``feature_layers`` of the constructor, else the last block.

        Returns:
            ``(B, h, w, D * L)`` patch features, blocks concatenated along the channels in the given order.
        """
        default = self.feature_layers or (self.depth - 1,)
        indices = default if layers is None else self._block_indices(layers)
        tokens, (h, w) = self.prepare_tokens(images)
        wanted = set(indices)
        taken: dict[int, Tensor] = {}
        first_patch = self.num_tokens_before_patches
        for index, block in enumerate(self.vit.blocks[: max(indices) + 1]):
            tokens = self._run_block(block, tokens)
            if index in wanted:
                taken[index] = self.vit.norm(tokens)[:, first_patch:]
        features = torch.cat([taken[i] for i in indices], dim=-1)
        return features.reshape(features.shape[0], h, w, features.shape[-1])

    # ------------------------------------------------------------------ helpers

    def _run_block(self, block: nn.Module, tokens: Tensor) -> Tensor:
        if self.vit.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def _position_embeddings(self, grid: tuple[int, int]) -> tuple[Tensor | None, Tensor | None]:
        """Position embeddings ``(prefix (1, P, D) or None, patches (1, h*w, D) or None)`` for ``grid``."""
        pos_embed = self.vit.pos_embed
        if pos_embed is None:
            return None, None
        # `no_embed_class` models (DINOv2, DeiT-3) have no position embedding for class/register tokens.
        num_prefix_pos = 0 if self.vit.no_embed_class else self.num_prefix_tokens
        pos_embed = resample_abs_pos_embed(
            pos_embed,
            new_size=grid,
            old_size=self.vit.patch_embed.grid_size,
            num_prefix_tokens=num_prefix_pos,
        )
        prefix_pos = pos_embed[:, :num_prefix_pos] if num_prefix_pos else None
        return prefix_pos, pos_embed[:, num_prefix_pos:]

    def _check_mask(self, mask: Tensor, batch: int, grid: tuple[int, int]) -> Tensor:
        h, w = grid
        if mask.dtype != torch.bool:
            raise ConfigError(f"mask must be a bool tensor (True = masked patch), got {mask.dtype}")
        if tuple(mask.shape) == (batch, h, w):
            mask = mask.reshape(batch, h * w)
        if tuple(mask.shape) != (batch, h * w):
            raise ConfigError(
                f"mask of shape {tuple(mask.shape)} does not fit {batch} images with a {h}x{w} patch grid"
                f" (expected ({batch}, {h * w}) or ({batch}, {h}, {w}))"
            )
        return mask

    @staticmethod
    def _drop_masked(patches: Tensor, mask: Tensor) -> Tensor:
        keep = ~mask
        kept = keep.sum(dim=1)
        if bool((kept != kept[0]).any()):
            raise ConfigError(
                f"dropping masked patches needs the same number of masked patches per image, got kept counts "
                f"{kept.tolist()}"
            )
        # Boolean indexing walks row-major, so kept patches stay in grid order within each image.
        return patches[keep].reshape(patches.shape[0], int(kept[0]), patches.shape[2])

    def _block_indices(self, layers: Sequence[int]) -> tuple[int, ...]:
        layers = list(layers)
        if not layers:
            raise ConfigError("feature_layers must name at least one block")
        indices = []
        for layer in layers:
            if not -self.depth <= layer < self.depth:
                raise ConfigError(
                    f"feature layer {layer} is out of range for a {self.depth}-block ViT"
                    f" (0..{self.depth - 1} or -{self.depth}..-1)"
                )
            indices.append(layer % self.depth)
        if len(set(indices)) != len(indices):
            raise ConfigError(f"feature_layers {layers} name the same block twice")
        return tuple(indices)


def _validation_message(exc: ValidationError) -> str:
    """One line for the first pydantic error, naming the option."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "options"
    if error["type"] == "extra_forbidden":
        accepted = ", ".join(ViTOptions.model_fields)
        return f"unknown backbone option '{key}'; accepted: {accepted}"
    return f"backbone option {key}: {error['msg']} (got {error.get('input')!r})"


def build_vit(
    *,
    timm_name: str | None = None,
    name: str | None = None,
    img_size: int = 224,
    extra_tokens: int = 0,
    timm_args: Mapping[str, Any] | None = None,
    **options: Any,
) -> ViTBackbone:
    """Factory used by the component registry.

    Args:
        timm_name: timm model name; takes precedence over ``name``.
        name: An alias (``vit_s16``) or timm name.
        img_size: Training resolution (see :class:`~dssl.backbones.vit_config.ViTOptions`).
        extra_tokens: Extra prefix tokens the objective asks for.
        timm_args: Architecture arguments over the timm model's (the alias's ``timm_args`` in registry.yaml).
        **options: The other :class:`~dssl.backbones.vit_config.ViTOptions` fields.

    Raises:
        ConfigError: No name, unknown name or invalid option.
    """
    model_name = timm_name or name
    if not model_name:
        raise ConfigError("build_vit needs a model name (name= or timm_name=)")
    try:
        opts = ViTOptions(img_size=img_size, **options)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from None
    return ViTBackbone(
        model_name,
        img_size=opts.img_size,
        extra_tokens=extra_tokens,
        drop_path_rate=opts.drop_path_rate,
        feature_layers=opts.feature_layers,
        mask_mode=opts.mask_mode,
        timm_args=timm_args,
    )
