"""UDI objective (Su & Ji, ECCV 2024), faithful to ``main_udi.py`` / ``utils.py`` of ISL-CV/udi.

* Backbone with one extra learnable prefix token ``[CLS+]`` (the core's extra-token contract:
  :meth:`UDIObjective.extra_tokens` returns 1) — the official ``num_class_token=2``.
* :class:`~dssl_udi.srs_attention.SRSAttention` on the last block's patch tokens gives patch representations at
  the SRS positions (student: its own sampled patches, one-hot maps; teacher: the same image points on the
  other global view, bilinear maps, plus every local crop's samples on each global).
* One shared :class:`~dssl.layers.heads.DINOHead` for ``[CLS]``, ``[CLS+]`` and patch outputs (the official
  ``MultiCropWrapper`` repeats the same head object), an :class:`~dssl.layers.ema.EMATeacher` of backbone + SRS
  layer + head (momentum 0.996 → 1), fed the two globals **in reversed order**.
* :class:`~dssl_udi.loss.UDILoss` with three centres; DINO's teacher-temperature warm-up and last-layer freezing.

The SRS positions are drawn here (per step, from ``srs_seed``) rather than in the data loader, because the
engine collates views with ``dssl.augment.multicrop.collate_views``, which carries only crops, boxes and flips;
the maps are then built from ``batch.boxes``/``batch.flips`` — the same distribution as the official loader.

Example:
    >>> from dssl.plugin import ViTBackbone                                       # doctest: +SKIP
    >>> backbone = ViTBackbone("vit_t16", img_size=32, extra_tokens=1)               # doctest: +SKIP
    >>> objective = UDIObjective(backbone, {"out_dim": 256}, total_steps=100)        # doctest: +SKIP
    >>> out = objective(view_batch, step=0); out["loss"].backward()                 # doctest: +SKIP
    >>> objective.after_step(step=0)                                                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
from dssl.plugin import (
    DINOHead,
    EMATeacher,
    Objective,
    forward_views,
    linear_warmup_then_constant,
    momentum_schedule,
    schedule_scalar,
    schedule_value,
    set_drop_path_rate,
)
from torch import Tensor, nn

from dssl_udi.config import UDIOptions
from dssl_udi.loss import UDILoss
from dssl_udi.srs import SamplingMaps, sampling_maps, srs_positions
from dssl_udi.srs_attention import SRSAttention

if TYPE_CHECKING:
    from dssl.plugin import ViewBatch

__all__ = ["UDIObjective"]


class UDIObjective(Objective):
    """The UDI objective (see the module docstring).

    Args:
        backbone: A ``ViTBackbone`` built with ``extra_tokens=1`` (``patch_size``, ``embed_dim``, ``num_heads``,
            ``prepare_tokens``/``run_blocks``/``split_tokens``).
        options: :class:`~dssl_udi.config.UDIOptions`, a mapping of its fields, or ``None``.
        total_steps: Number of optimisation steps.

    Attributes:
        head: The shared :class:`DINOHead`.
        srs: The student's :class:`SRSAttention`.
        teacher: :class:`EMATeacher` with ``teacher["backbone"]``, ``teacher["srs"]``, ``teacher["head"]``.
        loss_fn: :class:`UDILoss` (owns the three centres).
    """

    default_augmentation: ClassVar[str] = "udi"

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The three levels UDI averages: ``[CLS]``, ``[CLS+]`` and the patch level."""
        return ("level_cls", "level_clsp", "level_patch")

    options_class: ClassVar[type[UDIOptions]] = UDIOptions
    options: UDIOptions

    @classmethod
    def extra_tokens(cls, options: Any) -> int:
        """UDI's second class token ``[CLS+]``."""
        return 1

    def __init__(
        self, backbone: nn.Module, options: UDIOptions | dict[str, Any] | None = None, *, total_steps: int
    ) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        o = self.options
        if int(getattr(backbone, "num_extra_tokens", 0)) < 1:
            raise ValueError("UDI needs a backbone with one extra token ([CLS+]); build it with extra_tokens=1")
        if o.drop_path_rate is not None:
            set_drop_path_rate(self.backbone, o.drop_path_rate)
        embed_dim = int(backbone.embed_dim)  # type: ignore[arg-type]
        self.head = DINOHead(
            embed_dim,
            out_dim=o.out_dim,
            hidden_dim=o.hidden_dim,
            bottleneck_dim=o.bottleneck_dim,
            nlayers=o.head_layers,
            use_bn=o.use_bn_in_head,
            norm_last_layer=o.norm_last_layer,
        )
        self.srs = SRSAttention(embed_dim, num_heads=int(backbone.num_heads), qkv_bias=True)  # type: ignore[arg-type]
        self.teacher = EMATeacher(self._student(), eval_mode=not o.use_bn_in_head)
        if o.use_bn_in_head:
            set_drop_path_rate(self.teacher["backbone"], 0.0)
        self.loss_fn = UDILoss(o.out_dim, alpha=o.alpha, student_temp=o.student_temp, center_momentum=o.center_momentum)
        self.momentum_schedule = momentum_schedule(o.momentum_teacher, self.total_steps)
        self.teacher_temp_schedule = linear_warmup_then_constant(
            o.warmup_teacher_temp,
            o.teacher_temp,
            warmup_steps=o.warmup_teacher_temp_steps_for(self.total_steps),
            total_steps=self.total_steps,
        )
        self.freeze_last_layer_steps = o.freeze_last_layer_steps_for(self.total_steps)

    def _student(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head, "srs": self.srs}

    # ------------------------------------------------------------------ sampling

    def _generator(self, step: int) -> torch.Generator:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return torch.Generator().manual_seed((self.options.srs_seed * 1_000_003 + step) * 4099 + rank)

    def build_maps(
        self, batch: ViewBatch, *, step: int
    ) -> tuple[list[SamplingMaps], list[list[SamplingMaps]], tuple[int, int]]:
        """SRS samples and their maps for a batch (same global pattern for both globals, one local pattern).

        Returns:
            ``(glob, loc, grid)``: ``glob[r]`` maps global ``r``'s samples onto global ``1 − r``;
            ``loc[l][q]`` maps local ``l``'s samples onto global ``q``; ``grid`` is the global patch grid.
        """
        patch = int(self.backbone.patch_size)  # type: ignore[arg-type]
        boxes, flips = batch.boxes.float(), batch.flips  # maps built on the batch's device
        b = boxes.shape[0]
        grids = [(c.shape[-2] // patch, c.shape[-1] // patch) for c in batch.crops]
        g_grid = grids[0]
        gen = self._generator(step)
        pos_g = srs_positions(g_grid, self.options.global_window, batch=b, generator=gen).to(boxes.device)
        glob = [
            sampling_maps(pos_g, g_grid, boxes[:, r], flips[:, r], boxes[:, 1 - r], flips[:, 1 - r], g_grid)
            for r in (0, 1)
        ]
        loc: list[list[SamplingMaps]] = []
        if len(batch.crops) > 2:
            l_grid = grids[2]
            pos_l = srs_positions(l_grid, self.options.local_window, batch=b, generator=gen).to(boxes.device)
            for v in range(2, len(batch.crops)):
                maps = [
                    sampling_maps(pos_l, l_grid, boxes[:, v], flips[:, v], boxes[:, q], flips[:, q], g_grid)
                    for q in (0, 1)
                ]
                loc.append(maps)
        return glob, loc, g_grid

    # ------------------------------------------------------------------ forward

    @staticmethod
    def _tokens(backbone: nn.Module, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(cls (B, D), cls+ (B, D), pre-norm patch tokens (B, N, D))`` of one backbone pass."""
        tokens, grid = backbone.prepare_tokens(images)  # type: ignore[operator]
        tokens = backbone.run_blocks(tokens)  # type: ignore[operator]
        out = backbone.split_tokens(tokens, grid)  # type: ignore[operator]
        return out.cls, out.extra[:, 0], tokens[:, backbone.num_tokens_before_patches :]  # type: ignore[index]

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, Tensor]:
        """UDI loss of a batch of views (two globals first); updates the centres in training mode.

        Returns:
            ``loss``, ``teacher_temp`` and the detached loss parts (``level_*``, ``g_*``, ``l_*``).
        """
        crops = list(batch.crops)
        if int(batch.n_global) != 2:
            raise ValueError(f"UDI needs exactly 2 global views, got {batch.n_global}")
        n_local, b = len(crops) - 2, crops[0].shape[0]
        device = crops[0].device
        glob, loc, _ = self.build_maps(batch, step=step)
        valid = torch.stack([m.valid for m in glob]).to(device)  # (2, B, S)
        s_g = valid.shape[-1]
        temp = schedule_scalar(self.teacher_temp_schedule, step)  # a tensor: compiled losses do not recompile

        with torch.no_grad():
            t_backbone, t_srs, t_head = self.teacher["backbone"], self.teacher["srs"], self.teacher["head"]
            # Reversed order: teacher entry r is global 1 - r, which student global r is compared with.
            t_cls_tok, _, t_patches = self._tokens(t_backbone, torch.cat([crops[1], crops[0]]))
            maps = []
            for r in (0, 1):  # entry r = global q = 1 - r: student global r's samples, then every local on q
                q = 1 - r
                maps.append(torch.cat([glob[r].tgt] + [loc[i][q].tgt for i in range(n_local)], dim=1))
            t_sampled = t_srs(t_patches, torch.cat(maps).to(device))  # (2B, S_g + L S_l, D)
            t_logits = t_head(torch.cat([t_cls_tok, t_sampled.flatten(0, 1)]))
            t_cls = t_logits[: 2 * b].view(2, b, -1)
            t_samp = t_logits[2 * b :].view(2, b, -1, t_logits.shape[-1])
            t_patch = t_samp[:, :, :s_g]
            t_patch_local = valid_local = None
            if n_local:
                s_l = loc[0][0].valid.shape[-1]
                t_patch_local = t_samp[:, :, s_g:].reshape(2, b, n_local, s_l, -1).transpose(1, 2)
                # valid_local[r, l] = local l's samples inside global 1 - r (teacher entry r).
                valid_local = torch.stack([torch.stack([loc[i][1 - r].valid for i in range(n_local)]) for r in (0, 1)])
                valid_local = valid_local.to(device)

        s_cls_tok, s_clsp_tok, s_patches = self._tokens(self.backbone, torch.cat(crops[:2]))
        cls_list, clsp_list = [s_cls_tok], [s_clsp_tok]
        if n_local:
            for out in forward_views(self.backbone, crops[2:]):
                cls_list.append(out.cls)
                clsp_list.append(out.extra[:, 0])
        src = torch.cat([glob[0].src, glob[1].src]).to(device)  # student global r at its own samples
        s_sampled = self.srs(s_patches, src)  # (2B, S_g, D)
        n_rows = sum(x.shape[0] for x in cls_list)
        s_logits = self.head(torch.cat([*cls_list, *clsp_list, s_sampled.flatten(0, 1)]))
        k = s_logits.shape[-1]
        s_cls = s_logits[:n_rows].view(2 + n_local, b, k)
        s_clsp = s_logits[n_rows : 2 * n_rows].view(2 + n_local, b, k)
        s_patch = s_logits[2 * n_rows :].view(2, b, s_g, k)

        out = self.loss_fn(
            s_cls=s_cls,
            s_clsp=s_clsp,
            s_patch=s_patch,
            t_cls=t_cls,
            t_patch=t_patch,
            valid=valid,
            t_patch_local=t_patch_local,
            valid_local=valid_local,
            teacher_temp=temp,
            update_center=self.training,
        )
        out["teacher_temp"] = temp
        out["valid_fraction"] = valid.float().mean()
        return out

    # ------------------------------------------------------------------ hooks

    def compile_modules(self) -> list[nn.Module]:
        """The backbone blocks and :class:`UDILoss` (its temperature arrives as a tensor: no recompile)."""
        return [*super().compile_modules(), self.loss_fn]

    def before_optimizer_step(self, *, step: int) -> None:
        """Drop the gradients of the head's last layer while ``step < freeze_last_layer_steps``."""
        if step >= self.freeze_last_layer_steps:
            return
        for name, p in self.head.named_parameters():
            if "last_layer" in name:
                p.grad = None

    def after_step(self, *, step: int) -> None:
        """EMA update of the teacher (backbone, SRS layer and head)."""
        self.teacher.update(self._student(), schedule_value(self.momentum_schedule, step))

    def eval_backbone(self) -> nn.Module:
        """The teacher backbone (as DINO; which network UDI's own evaluation used is not in the repo)."""
        return self.teacher["backbone"]
