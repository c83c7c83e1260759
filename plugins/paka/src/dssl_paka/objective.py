"""PaKA objective: post-training a pretrained ViT by aligning ROI-aligned patch kernels with an EMA teacher.

Pipeline per batch (methods.md §2.3; official code not public, see README for what is reconstructed):

1. Teacher (EMA of backbone + projector, eval mode, no gradient) encodes the **clean** renderings of the
   global crops (``batch.clean``: same box and flip, no photometric change; the augmented globals when the
   augmentation gives no clean renderings).
2. Student encodes its crops: the augmented globals (``student_globals``) and the locals.
3. Pairs: every student global with every teacher global; every student local with its parent teacher global
   (the global containing most of it; ``local_pairs="all"``: every global). A pair whose intersection box spans
   fewer than ``min_overlap_cells`` patch cells of either view is masked out.
4. Both patch maps of a pair are resampled onto the intersection box at ``roi_grid x roi_grid``
   (:func:`dssl.augment.geometry.roi_align`, in float32, ``roi_sampling_ratio²`` bilinear sub-samples
   averaged per cell as ``torchvision.ops.roi_align``), so cell ``i`` shows the same image point in both.
5. The projector (3-layer GELU MLP, :class:`dssl.layers.heads.MLP`) is applied **after** alignment, the
   teacher's own EMA projector on the teacher side.
6. :class:`~dssl_paka.loss.PatchKernelAlignmentLoss` (``1 - CKA`` by default), kernels in float32.

Example:
    >>> from dssl.plugin import ViTBackbone                                  # doctest: +SKIP
    >>> backbone = ViTBackbone("vit_t16", img_size=32)                          # doctest: +SKIP
    >>> objective = PaKAObjective(backbone, {"out_dim": 64}, total_steps=10)    # doctest: +SKIP
    >>> objective(view_batch, step=0)["loss"].backward()                        # doctest: +SKIP
    >>> objective.after_step(step=0)                                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from dssl.plugin import (
    MLP,
    EMATeacher,
    Objective,
    decay_param_groups,
    forward_views,
    momentum_schedule,
    overlap_box,
    roi_align,
    schedule_value,
    set_drop_path_rate,
)
from torch import Tensor, nn

from dssl_paka.augmentation import box_overlap
from dssl_paka.config import PaKAOptions
from dssl_paka.loss import PatchKernelAlignmentLoss

if TYPE_CHECKING:
    from dssl.plugin import ViewBatch

__all__ = ["PaKAObjective", "align_pair"]


def _feature_map(output: Any) -> Tensor:
    """``(B, D, h, w)`` float32 patch map of a backbone output."""
    return output.patch_map().permute(0, 3, 1, 2).float()


def _cells(roi: Tensor, box: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B,)`` the smaller side of ``roi`` measured in patch cells of a view with ``box`` and ``grid``."""
    h, w = grid
    along_x = (roi[:, 2] - roi[:, 0]) / (box[:, 2] - box[:, 0]) * w
    along_y = (roi[:, 3] - roi[:, 1]) / (box[:, 3] - box[:, 1]) * h
    return torch.minimum(along_x, along_y)


def align_pair(
    teacher_map: Tensor,
    teacher_box: Tensor,
    teacher_flip: Tensor,
    student_map: Tensor,
    student_box: Tensor,
    student_flip: Tensor,
    grid: int,
    min_cells: float = 1.0,
    sampling_ratio: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """ROI-align a (teacher, student) pair of feature maps on their intersection box.

    Args:
        teacher_map: ``(B, D_t, h_t, w_t)``.
        teacher_box: ``(B, 4)`` its crop boxes (image coordinates).
        teacher_flip: ``(B,)`` its flips.
        student_map: ``(B, D_s, h_s, w_s)``.
        student_box: ``(B, 4)``.
        student_flip: ``(B,)``.
        grid: Side of the common output grid.
        min_cells: Minimum side of the intersection in patch cells of either view.
        sampling_ratio: Bilinear samples per cell side, averaged (``0``: adaptive; see ``roi_align``).

    Returns:
        ``(teacher, student, ok)``: ``(B, grid*grid, D_t)``, ``(B, grid*grid, D_s)`` (row-major cells of the
        intersection box in unflipped image orientation) and ``(B,)`` bool, false for pairs to ignore.
    """
    roi, ok = overlap_box(teacher_box, student_box)
    ok = ok & (_cells(roi, teacher_box, teacher_map.shape[-2:]) >= min_cells)
    ok = ok & (_cells(roi, student_box, student_map.shape[-2:]) >= min_cells)
    out_hw = (grid, grid)
    t = roi_align(teacher_map, teacher_box, teacher_flip, roi, out_hw, sampling_ratio=sampling_ratio)
    s = roi_align(student_map, student_box, student_flip, roi, out_hw, sampling_ratio=sampling_ratio)
    return t.flatten(2).transpose(1, 2), s.flatten(2).transpose(1, 2), ok


class PaKAObjective(Objective):
    """The PaKA objective (see the module docstring).

    Args:
        backbone: Student backbone (``TokenOutput`` with a full patch grid; ``embed_dim``).
        options: :class:`~dssl_paka.config.PaKAOptions`, a mapping of its fields, or ``None``.
        total_steps: Number of optimisation steps (length of the momentum schedule).

    Attributes:
        head: Student projector :class:`MLP` ``(..., D) -> (..., out_dim)``.
        teacher: :class:`EMATeacher` with ``teacher["backbone"]`` and ``teacher["head"]``.
        loss_fn: :class:`PatchKernelAlignmentLoss`.
        momentum_schedule: Float64 ``(total_steps,)`` EMA momentum per step.
    """

    default_augmentation: ClassVar[str] = "paka"
    options_class: ClassVar[type[PaKAOptions]] = PaKAOptions
    options: PaKAOptions

    def __init__(
        self, backbone: nn.Module, options: PaKAOptions | dict[str, Any] | None = None, *, total_steps: int
    ) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        o = self.options
        if o.drop_path_rate is not None:
            set_drop_path_rate(self.backbone, o.drop_path_rate)
        embed_dim = int(getattr(backbone, "embed_dim"))  # noqa: B009 (documented backbone attribute)
        self.head = MLP(embed_dim, out_dim=o.out_dim, hidden_dim=o.hidden_dim, nlayers=o.head_layers)
        self.teacher = EMATeacher({"backbone": self.backbone, "head": self.head})
        set_drop_path_rate(self.teacher["backbone"], 0.0)
        self.loss_fn = PatchKernelAlignmentLoss(
            kernel=o.kernel,
            bandwidth=o.rbf_bandwidth,
            form=o.form,
            scope=o.kernel_scope,
            max_tokens=o.max_tokens,
            eps=o.cka_eps,
        )
        self.momentum_schedule = momentum_schedule(o.momentum_teacher, self.total_steps)

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, Tensor]:
        """PaKA loss of a batch of views.

        Args:
            batch: ``crops`` (globals first), ``boxes`` ``(B, V, 4)``, ``flips`` ``(B, V)``, ``clean`` (teacher
                inputs) and ``n_global``.
            step: Zero-based global step (unused: the loss has no schedule).

        Returns:
            ``{"loss", "cka", "valid_pairs", "local_containment_min"}`` scalars (all but the loss detached, for
            logging), plus ``"local_fallback_rate"`` when the augmentation reports its fallbacks (PaKA's does):
            the fraction of locals for which no proposal reached the overlap threshold.
        """
        o = self.options
        n_g = int(batch.n_global)
        crops = list(batch.crops)
        teacher_inputs = list(batch.clean[:n_g]) if batch.clean is not None else crops[:n_g]
        boxes, flips = batch.boxes.float(), batch.flips
        with torch.no_grad():
            t_maps = [_feature_map(out) for out in forward_views(self.teacher["backbone"], teacher_inputs)]
        student_views = (list(range(n_g)) if o.student_globals else []) + list(range(n_g, len(crops)))
        s_out = forward_views(self.backbone, [crops[v] for v in student_views])
        s_maps = dict(zip(student_views, (_feature_map(out) for out in s_out), strict=True))

        teachers, students, oks = [], [], []
        for v in student_views:
            for g in self._teacher_partners(v, n_g, boxes):
                if isinstance(g, int):
                    t_map, t_box, t_flip = t_maps[g], boxes[:, g], flips[:, g]
                else:  # per-image parent index (B,)
                    rows = torch.arange(len(g), device=g.device)
                    t_map = torch.stack(t_maps)[g, rows]
                    t_box, t_flip = boxes[rows, g], flips[rows, g]
                t, s, ok = align_pair(
                    t_map,
                    t_box,
                    t_flip,
                    s_maps[v],
                    boxes[:, v],
                    flips[:, v],
                    o.roi_grid,
                    o.min_overlap_cells,
                    o.roi_sampling_ratio,
                )
                teachers.append(t)
                students.append(s)
                oks.append(ok)
        t_cells, s_cells = torch.cat(teachers), torch.cat(students)
        ok = torch.cat(oks)
        with torch.no_grad():
            t_proj = self.teacher["head"](t_cells)
        s_proj = self.head(s_cells)
        valid = ok[:, None].expand(-1, s_proj.shape[1])
        out = self.loss_fn(s_proj, t_proj, valid)
        result = {"loss": out.loss, "cka": out.cka, "valid_pairs": ok.float().mean().detach()}
        n_local = len(crops) - n_g
        if n_local:
            with torch.no_grad():  # how far each local lies inside its best-containing global
                inside = box_overlap(boxes[:, n_g:, None], boxes[:, None, :n_g], "containment").amax(dim=2)
            result["local_containment_min"] = inside.min()
            if "local_fallbacks" in batch.stats:
                result["local_fallback_rate"] = batch.stats["local_fallbacks"].float().sum() / (n_local * len(boxes))
        return result

    def _teacher_partners(self, view: int, n_g: int, boxes: Tensor) -> list[int | Tensor]:
        """Teacher globals a student view is paired with: ints, or a ``(B,)`` per-image parent index."""
        if view < n_g or self.options.local_pairs == "all":
            return list(range(n_g))
        containment = box_overlap(boxes[:, view : view + 1], boxes[:, :n_g], "containment")  # (B, n_g)
        return [containment.argmax(dim=1)]

    def param_groups(self) -> list[dict[str, Any]]:
        """Backbone and projector groups with their own ``lr_scale`` (DINO's no-decay rule in each)."""
        o = self.options
        return decay_param_groups(
            self.backbone.named_parameters(), name="backbone_", lr_scale=o.backbone_lr_scale
        ) + decay_param_groups(self.head.named_parameters(), name="head_", lr_scale=o.head_lr_scale)

    def after_step(self, *, step: int) -> None:
        """EMA update of the teacher backbone and projector with this step's momentum."""
        momentum = schedule_value(self.momentum_schedule, step)
        self.teacher.update({"backbone": self.backbone, "head": self.head}, momentum)

    def eval_backbone(self) -> nn.Module:
        """The EMA teacher's backbone (``evaluate="teacher"``, default) or the student's."""
        return self.teacher["backbone"] if self.options.evaluate == "teacher" else self.backbone
