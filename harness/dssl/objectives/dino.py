"""DINO: self-distillation with no labels (Caron et al., ICCV 2021) — the harness's baseline objective.

Faithful to ``main_dino.py`` of facebookresearch/dino (commit 7c446df):

* student = backbone (with stochastic depth, ``drop_path_rate`` 0.1) + :class:`~dssl.layers.heads.DINOHead`
  on the ``[CLS]`` token, run on **all** views; teacher = EMA copy of backbone + head, run on the **global**
  views only, without gradient (momentum 0.996 → 1, cosine per step; teacher kept in eval mode, so without
  drop path like DINO's teacher which is built with ``drop_path_rate=0``; with ``use_bn_in_head`` it runs in
  train mode like DINO's, so that its head BatchNorm uses batch statistics);
* :class:`~dssl.objectives.dino_loss.DINOLoss`: teacher ``softmax((t − c)/τ_t)``, student
  ``log_softmax(s/0.1)``, cross-entropy averaged over (teacher global q, student view v ≠ q) pairs; the
  centre is updated after the loss from the raw teacher logits;
* teacher temperature ``np.linspace(warmup_teacher_temp, teacher_temp, warmup)`` then constant, per step;
* the head's last layer gets no update during the first ``freeze_last_layer`` steps (its gradients are set
  to ``None`` before the optimizer step, as ``utils.cancel_gradients_last_layer``);
* the evaluated backbone is the teacher's (DINO reports results of the teacher weights).

Consecutive equal-resolution crops share one backbone call, as DINO's ``MultiCropWrapper``.

Example:
    >>> from dssl.backbones.vit import ViTBackbone                      # doctest: +SKIP
    >>> backbone = ViTBackbone("vit_t16", img_size=32)                  # doctest: +SKIP
    >>> objective = DINOObjective(backbone, {"out_dim": 256}, total_steps=100)  # doctest: +SKIP
    >>> out = objective(view_batch, step=0); out["loss"].backward()    # doctest: +SKIP
    >>> objective.after_step(step=0)                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from dssl.layers.drop_path import set_drop_path_rate
from dssl.layers.ema import EMATeacher, momentum_schedule
from dssl.layers.heads import DINOHead
from dssl.layers.multicrop_forward import forward_views
from dssl.layers.schedules import linear_warmup_then_constant, schedule_scalar, schedule_value
from dssl.objectives.base import Objective
from dssl.objectives.dino_config import DINOOptions
from dssl.objectives.dino_loss import DINOLoss

if TYPE_CHECKING:
    from dssl.augment.multicrop import ViewBatch

__all__ = ["DINOObjective"]


class DINOObjective(Objective):
    """The DINO objective (see the module docstring).

    Args:
        backbone: Student backbone with ``embed_dim`` whose outputs have ``.cls`` ``(B, D)``.
        options: :class:`~dssl.objectives.dino_config.DINOOptions`, a mapping of its fields, or ``None``.
        total_steps: Number of optimisation steps (length of the momentum / temperature schedules).

    Attributes:
        head: Student :class:`DINOHead` ``(B, D) -> (B, out_dim)``.
        teacher: :class:`EMATeacher` holding ``teacher["backbone"]`` and ``teacher["head"]``.
        loss_fn: :class:`DINOLoss` (owns the centre buffer).
        momentum_schedule: Float64 ``(total_steps,)`` EMA momentum per step.
        teacher_temp_schedule: Float64 ``(total_steps,)`` teacher temperature per step.
        freeze_last_layer_steps: Steps during which the last head layer is not updated.
    """

    default_augmentation: ClassVar[str] = "multicrop"
    options_class: ClassVar[type[DINOOptions]] = DINOOptions
    options: DINOOptions

    def __init__(
        self, backbone: nn.Module, options: DINOOptions | dict[str, Any] | None = None, *, total_steps: int
    ) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        o = self.options
        if o.drop_path_rate is not None:
            set_drop_path_rate(self.backbone, o.drop_path_rate)
        embed_dim = int(getattr(backbone, "embed_dim"))  # noqa: B009 (documented backbone attribute)
        self.head = DINOHead(
            embed_dim,
            out_dim=o.out_dim,
            hidden_dim=o.hidden_dim,
            bottleneck_dim=o.bottleneck_dim,
            nlayers=o.head_layers,
            use_bn=o.use_bn_in_head,
            norm_last_layer=o.norm_last_layer,
        )
        # DINO's teacher runs in train mode; that only matters with BatchNorm in the head (batch statistics),
        # so the teacher follows train() then, with its stochastic depth removed (DINO builds it without).
        self.teacher = EMATeacher(self._student(), eval_mode=not o.use_bn_in_head)
        if o.use_bn_in_head:
            set_drop_path_rate(self.teacher["backbone"], 0.0)
        self.loss_fn = DINOLoss(o.out_dim, student_temp=o.student_temp, center_momentum=o.center_momentum)
        self.momentum_schedule = momentum_schedule(o.momentum_teacher, self.total_steps)
        self.teacher_temp_schedule = linear_warmup_then_constant(
            o.warmup_teacher_temp,
            o.teacher_temp,
            warmup_steps=o.warmup_teacher_temp_steps_for(self.total_steps),
            total_steps=self.total_steps,
        )
        self.freeze_last_layer_steps = o.freeze_last_layer_steps_for(self.total_steps)

    def _student(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, torch.Tensor]:
        """DINO loss of a batch of views; updates the centre afterwards when in training mode.

        Args:
            batch: ``batch.crops`` are ``V`` tensors ``(B, 3, h_v, w_v)``, the ``batch.n_global`` globals
                first.
            step: Zero-based global step (selects the teacher temperature).

        Returns:
            ``{"loss": scalar, "teacher_temp": scalar}``.
        """
        crops = list(batch.crops)
        n_global = int(batch.n_global)
        n_views, b = len(crops), crops[0].shape[0]
        temp = schedule_scalar(self.teacher_temp_schedule, step)  # a tensor: compiled losses do not recompile
        with torch.no_grad():
            t_out = forward_views(self.teacher["backbone"], crops[:n_global])
            t_logits = self.teacher["head"](torch.cat([o.cls for o in t_out]))
        s_out = forward_views(self.backbone, crops)
        s_logits = self.head(torch.cat([o.cls for o in s_out]))
        loss = self.loss_fn(
            s_logits.view(n_views, b, -1),
            t_logits.view(n_global, b, -1),
            teacher_temp=temp,
            update_center=self.training,
        )
        return {"loss": loss, "teacher_temp": temp}

    def compile_modules(self) -> list[nn.Module]:
        """The backbone blocks and :class:`DINOLoss` (its temperature arrives as a tensor: no recompile)."""
        return [*super().compile_modules(), self.loss_fn]

    def before_optimizer_step(self, *, step: int) -> None:
        """Drop the gradients of the head's last layer while ``step < freeze_last_layer_steps``."""
        if step >= self.freeze_last_layer_steps:
            return
        for name, p in self.head.named_parameters():
            if "last_layer" in name:
                p.grad = None

    def after_step(self, *, step: int) -> None:
        """EMA update of the teacher (backbone and head) with this step's momentum."""
        self.teacher.update(self._student(), schedule_value(self.momentum_schedule, step))

    def eval_backbone(self) -> nn.Module:
        """The teacher backbone (DINO evaluates the teacher)."""
        return self.teacher["backbone"]

    def full_checkpoint(self) -> dict[str, Any]:
        """The teacher (backbone and head) and the centre in facebookresearch/dino's checkpoint layout.

        ``--init`` reads such a file whole: the backbone from ``teacher``'s ``backbone.*``, and
        :meth:`load_init_extras` the head and centre, so a run continues DINO where this one stopped
        (the student starts as the teacher, as DINO's own student and teacher do at step 0).
        """
        teacher = {f"backbone.{k}": v.detach().cpu().clone() for k, v in self.teacher["backbone"].state_dict().items()}
        teacher |= {f"head.{k}": v.detach().cpu().clone() for k, v in self.teacher["head"].state_dict().items()}
        return {"teacher": teacher, "dino_loss": {"center": self.loss_fn.center.center.detach().cpu().clone()}}

    def load_init_extras(self, path: str) -> str | None:
        """Continue from a full DINO checkpoint: load its projection head (and centre) too.

        Official ``main_dino.py`` checkpoints hold ``teacher``/``student`` state dicts with ``head.*`` next to
        ``backbone.*`` and the loss's ``center``. The teacher head goes into the EMA teacher, the student head
        into the student (the teacher's when the file has no student); heads of another shape are not loaded
        (``out_dim``, ``hidden_dim``, ``bottleneck_dim`` and ``head_layers`` must match the checkpoint's).

        Returns:
            What was loaded, or why not; ``None`` for a file without a DINO head (e.g. a backbone checkpoint).
        """
        import logging

        from dssl.backbones.checkpoint import checkpoint_entry, module_tensors

        heads = module_tensors(path, "head")
        if not heads:
            return None
        teacher_state = heads.get("teacher") or heads["student"]
        student_state = heads.get("student") or teacher_state
        own = self.head.state_dict()
        # Weight-norm keys of the reference (weight_g / weight_v) map onto the parametrisation on load.
        renamed = {
            "last_layer.weight_g": "last_layer.parametrizations.weight.original0",
            "last_layer.weight_v": "last_layer.parametrizations.weight.original1",
        }
        mismatched = [
            k for k, v in teacher_state.items() if getattr(own.get(renamed.get(k, k)), "shape", None) != v.shape
        ]
        if mismatched or len(teacher_state) != len(own):
            differing = ", ".join(mismatched[:3]) or "other keys"
            note = f"DINO head in the checkpoint not loaded: it differs from this head ({differing})"
            logging.getLogger(__name__).warning("%s", note)
            return note
        self.head.load_state_dict(student_state)
        self.teacher["head"].load_state_dict(teacher_state)
        center = checkpoint_entry(path, "dino_loss", "center")
        loaded = "DINO head (teacher and student)"
        if isinstance(center, torch.Tensor) and center.shape == self.loss_fn.center.center.shape:
            self.loss_fn.center.center.copy_(center)
            loaded += " and centre"
        return f"{loaded} loaded from the checkpoint"
