"""DINO's self-distillation loss (Caron et al. 2021, Eq. 1-3 and Alg. 1; ``DINOLoss`` in ``main_dino.py``).

For teacher outputs on the global views ``q ∈ {0..G-1}`` and student outputs on all views ``v ∈ {0..V-1}``
(the first ``G`` student views are the same global crops)::

    P_t(q) = softmax((g_t(x_q) − c) / τ_t)       (centred, sharpened, no gradient)
    log P_s(v) = log_softmax(g_s(x_v) / τ_s)
    L = 1/|S| Σ_{(q, v) ∈ S} mean_b [ −Σ_k P_t(q)_bk log P_s(v)_bk ],   S = {(q, v) : v ≠ q}

and, after the loss, the centre ``c`` is updated from the raw teacher logits (see
:class:`dssl.layers.centering.Center`). Instead of the reference's double loop, all pair cross-entropies are
one ``einsum`` over ``(G, B, K) × (V, B, K)``; the result is the same average over pairs. The loss is
computed in float32 with autocast disabled, whatever the dtype of the logits.

Example:
    >>> import torch
    >>> loss_fn = DINOLoss(out_dim=16)
    >>> student = torch.randn(4, 8, 16)   # V=4 views (2 global + 2 local), B=8
    >>> teacher = torch.randn(2, 8, 16)   # G=2 global views
    >>> loss = loss_fn(student, teacher, teacher_temp=0.04)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dssl.layers.centering import Center

__all__ = ["DINOLoss"]


def _stack(logits: torch.Tensor | Sequence[torch.Tensor], what: str) -> torch.Tensor:
    x = logits if isinstance(logits, torch.Tensor) else torch.stack(list(logits))
    if x.dim() != 3:
        raise ValueError(f"{what} logits must be (views, B, K) or a list of (B, K), got {tuple(x.shape)}")
    return x


class DINOLoss(nn.Module):
    """Cross-entropy between centred/sharpened teacher and student distributions over cross-view pairs.

    Args:
        out_dim: Number of prototypes ``K``.
        student_temp: Student temperature ``τ_s`` (0.1).
        center_momentum: Momentum of the teacher-logit centre (0.9).

    Attributes:
        center: The :class:`~dssl.layers.centering.Center` (buffer ``center.center`` of shape ``(1, K)``).
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = float(student_temp)
        self.center = Center(out_dim, momentum=center_momentum)

    def pair_losses(
        self,
        student_logits: torch.Tensor | Sequence[torch.Tensor],
        teacher_logits: torch.Tensor | Sequence[torch.Tensor],
        *,
        teacher_temp: float | torch.Tensor,
    ) -> torch.Tensor:
        """Batch-mean cross-entropy of every (teacher view q, student view v) pair, including v == q.

        Args:
            student_logits: ``(V, B, K)`` or ``V`` tensors ``(B, K)``.
            teacher_logits: ``(G, B, K)`` or ``G`` tensors ``(B, K)``, raw (un-centred); ``G <= V``.
            teacher_temp: Teacher temperature ``τ_t``: a float, or a 0-d tensor (what the objectives pass, so
                that a compiled loss takes a new temperature without compiling again).

        Returns:
            Float32 ``(G, V)`` matrix; entry ``(q, v)`` is ``mean_b −Σ_k P_t(q) log P_s(v)``.
        """
        s = _stack(student_logits, "student")
        t = _stack(teacher_logits, "teacher")
        if t.shape[1:] != s.shape[1:] or t.shape[0] > s.shape[0]:
            raise ValueError(f"incompatible teacher {tuple(t.shape)} and student {tuple(s.shape)} logits")
        with torch.autocast(device_type=s.device.type, enabled=False):
            log_p = F.log_softmax(s.float() / self.student_temp, dim=-1)
            q = F.softmax(self.center(t.detach()) / teacher_temp, dim=-1)
            return -torch.einsum("gbk,vbk->gv", q, log_p) / s.shape[1]

    def forward(
        self,
        student_logits: torch.Tensor | Sequence[torch.Tensor],
        teacher_logits: torch.Tensor | Sequence[torch.Tensor],
        *,
        teacher_temp: float | torch.Tensor,
        update_center: bool = True,
    ) -> torch.Tensor:
        """The DINO loss (mean over pairs ``v ≠ q``); then, if ``update_center``, the centre update.

        Args:
            student_logits: ``(V, B, K)`` or ``V`` tensors ``(B, K)``; the first ``G`` views are the globals.
            teacher_logits: ``(G, B, K)`` or ``G`` tensors ``(B, K)``, raw teacher logits of the globals.
            teacher_temp: Teacher temperature of this step (a float or a 0-d tensor).
            update_center: Update the centre after computing the loss (DINO does so on every call).

        Returns:
            Scalar float32 loss.
        """
        pairs = self.pair_losses(student_logits, teacher_logits, teacher_temp=teacher_temp)
        n_teacher, n_student = pairs.shape
        # The pairs v != q, row-major (the order of a boolean mask), indexed from the shape alone: no
        # data-dependent size, so the loss compiles into one graph (see dssl.engine.compilation).
        kept = [q * n_student + v for q in range(n_teacher) for v in range(n_student) if v != q]
        if not kept:
            raise ValueError("DINO needs at least one pair of different views (two globals, or locals)")
        index = torch.tensor(kept, device=pairs.device)
        loss = pairs.flatten()[index].sum() / len(kept)
        if update_center:
            t = _stack(teacher_logits, "teacher")
            self.center.update(t.reshape(-1, t.shape[-1]))
        return loss
