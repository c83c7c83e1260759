"""UDI's three-level distillation loss (``UDILoss`` + ``Centering`` in ``main_udi.py`` of ISL-CV/udi).

Teacher outputs come in the **teacher's order**: the teacher is fed the two globals reversed (``[g1, g0]``),
so teacher entry ``r`` is the *other* global of student global ``r`` and pairs index-wise. ``τ_s = 0.1``,
``τ_t`` scheduled, three centres ``c_0, c_1, c_2`` (momentum 0.9), one shared head upstream::

    [CLS]   q_r = softmax((t_cls[r] − c_0)/τ_t)
            g_cls = mean_{r,b} CE(q_r, s_cls[r]);   l_cls = mean_{r,l,b} CE(q_r, s_cls[2+l])
    [CLS+]  p̄_r = Σ_s m_s t_patch[r,s] / (Σ_s m_s + 1e-5)                    (teacher patch LOGITS)
            y_r = α p̄_r + (1 − α) t_cls[r]                                    (blend on logits ...)
            q⁺_r = softmax((y_r − c_1)/τ_t)                                   (... before centring)
            g_cls+ = mean_{r,b} CE(q⁺_r, s_cls+[r]); locals: p̄ pools each local's samples inside global r
    patch   g_patch = Σ_{r,b,s} m CE(softmax((t_patch − c_2)/τ_t), s_patch) / Σ m   (globals only)

with ``CE(q, s) = −Σ_k q_k log softmax(s/τ_s)_k``, invalid student slots filled with ``1e-9`` before the
log-softmax (as the official code). Per level ``(2 g + 2 L l) / (2 + 2 L)`` (``L`` locals; the patch level is
``g_patch``) and the total is the mean of the three levels. After the loss the centres are updated from raw
teacher outputs: ``c_0`` from the global ``[CLS]`` logits, ``c_1`` from every blended target (globals and
locals), ``c_2`` from the mask-weighted teacher patch logits (global and local samples), each a per-rank
mean averaged over ranks (works without ``torch.distributed``). Computed in float32 with autocast off.

Example:
    >>> loss_fn = UDILoss(out_dim=16)
    >>> V, B, S, L, K = 4, 2, 5, 2, 16
    >>> out = loss_fn(
    ...     s_cls=torch.randn(V, B, K), s_clsp=torch.randn(V, B, K), s_patch=torch.randn(2, B, S, K),
    ...     t_cls=torch.randn(2, B, K), t_patch=torch.randn(2, B, S, K), valid=torch.rand(2, B, S) > 0.3,
    ...     t_patch_local=torch.randn(2, L, B, 3, K), valid_local=torch.rand(2, L, B, 3) > 0.3,
    ...     teacher_temp=0.04)
    >>> sorted(out)
    ['g_cls', 'g_clsp', 'l_cls', 'l_clsp', 'level_cls', 'level_clsp', 'level_patch', 'loss']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from dssl.plugin import Center, distributed_mean
from torch import Tensor, nn

__all__ = ["UDILoss", "masked_mean"]

_POOL_EPS = 1e-5  # official: m / (m.sum() + 1e-5); a crop without valid samples pools to 0, not NaN
_FILL = 1e-9  # official masked_fill value of invalid student patch logits


def masked_mean(logits: Tensor, mask: Tensor) -> Tensor:
    """``Σ_s m_s x_s / (Σ_s m_s + 1e-5)`` over the sample dimension ``-2``: ``(..., S, K), (..., S) -> (..., K)``."""
    m = mask.to(logits.dtype).unsqueeze(-1)
    return (logits * m).sum(-2) / (m.sum(-2) + _POOL_EPS)


def _ce(target: Tensor, log_p: Tensor) -> Tensor:
    return -(target * log_p).sum(-1)


class UDILoss(nn.Module):
    """The UDI loss (see the module docstring).

    Args:
        out_dim: Number of prototypes ``K``.
        alpha: Blend weight of the pooled teacher patch logits in the ``[CLS+]`` target (0.5).
        student_temp: ``τ_s`` (0.1).
        center_momentum: Momentum of the three centres (0.9).

    Attributes:
        centers: Three :class:`~dssl.layers.centering.Center` (``[CLS]``, ``[CLS+]``, patch), buffers ``(1, K)``.
    """

    def __init__(self, out_dim: int, alpha: float = 0.5, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.alpha = float(alpha)
        self.student_temp = float(student_temp)
        self.centers = nn.ModuleList([Center(out_dim, momentum=center_momentum) for _ in range(3)])

    def forward(
        self,
        *,
        s_cls: Tensor,
        s_clsp: Tensor,
        s_patch: Tensor,
        t_cls: Tensor,
        t_patch: Tensor,
        valid: Tensor,
        t_patch_local: Tensor | None,
        valid_local: Tensor | None,
        teacher_temp: float | Tensor,
        update_center: bool = True,
    ) -> dict[str, Tensor]:
        """Loss of one batch; then (if ``update_center``) the centre updates.

        Args:
            s_cls: ``(V, B, K)`` student ``[CLS]`` logits, the 2 globals first, then ``L = V − 2`` locals.
            s_clsp: ``(V, B, K)`` student ``[CLS+]`` logits.
            s_patch: ``(2, B, S, K)`` student patch logits at its own SRS positions of global ``r``.
            t_cls: ``(2, B, K)`` teacher ``[CLS]`` logits, teacher order (entry ``r`` = global ``1 − r``).
            t_patch: ``(2, B, S, K)`` teacher patch logits at the points of student global ``r``'s samples.
            valid: ``(2, B, S)`` bool, sample ``s`` of global ``r`` lies inside the other global.
            t_patch_local: ``(2, L, B, S_l, K)`` teacher entry ``r``'s patch logits at local ``l``'s samples.
            valid_local: ``(2, L, B, S_l)`` bool validity of those samples.
            teacher_temp: ``τ_t`` of this step: a float or a 0-d tensor (the objective passes a tensor, so that a
                compiled loss takes a new temperature without compiling again).
            update_center: Update the three centres after the loss.

        Returns:
            ``loss`` (scalar to optimise) and detached parts: ``level_*`` (the three levels), ``g_*``/``l_*``.
        """
        n_local = s_cls.shape[0] - 2
        with torch.autocast(device_type=s_cls.device.type, enabled=False):
            tau = teacher_temp
            t_cls = t_cls.detach().float()
            t_patch = t_patch.detach().float()
            c_cls, c_clsp, c_patch = (c.center for c in self.centers)
            log_cls = F.log_softmax(s_cls.float() / self.student_temp, dim=-1)
            log_clsp = F.log_softmax(s_clsp.float() / self.student_temp, dim=-1)

            # [CLS]: student global r vs teacher entry r (= the other global); locals vs both teacher globals.
            q_cls = F.softmax((t_cls - c_cls) / tau, dim=-1)
            g_cls = _ce(q_cls, log_cls[:2]).mean()

            # [CLS+]: blend raw logits, then centre and sharpen.
            y_glob = self.alpha * masked_mean(t_patch, valid) + (1.0 - self.alpha) * t_cls
            q_clsp = F.softmax((y_glob - c_clsp) / tau, dim=-1)
            g_clsp = _ce(q_clsp, log_clsp[:2]).mean()

            # Patch level, globals only: masked CE normalised by the number of valid samples in the batch.
            m = valid.float()
            q_patch = F.softmax((t_patch - c_patch) / tau, dim=-1)
            s_p = (s_patch.float() / self.student_temp).masked_fill(~valid.unsqueeze(-1), _FILL)
            ce_patch = _ce(q_patch, F.log_softmax(s_p, dim=-1))
            g_patch = (ce_patch * m).sum() / m.sum().clamp(min=1.0)

            zero = g_cls.new_zeros(())
            l_cls, l_clsp, y_loc = zero, zero, None
            if n_local > 0:
                if t_patch_local is None or valid_local is None:
                    raise ValueError("local crops need t_patch_local and valid_local")
                t_patch_local = t_patch_local.detach().float()
                l_cls = _ce(q_cls[:, None], log_cls[None, 2:]).mean()
                y_loc = self.alpha * masked_mean(t_patch_local, valid_local) + (1.0 - self.alpha) * t_cls[:, None]
                q_loc = F.softmax((y_loc - c_clsp) / tau, dim=-1)
                l_clsp = _ce(q_loc, log_clsp[None, 2:]).mean()

            denom = 2.0 + 2.0 * n_local
            level_cls = (2.0 * g_cls + 2.0 * n_local * l_cls) / denom
            level_clsp = (2.0 * g_clsp + 2.0 * n_local * l_clsp) / denom
            level_patch = g_patch
            loss = (level_cls + level_clsp + level_patch) / 3.0

        if update_center:
            self._update_centers(t_cls, y_glob, y_loc, t_patch, valid, t_patch_local, valid_local)
        parts = {
            "level_cls": level_cls,
            "level_clsp": level_clsp,
            "level_patch": level_patch,
            "g_cls": g_cls,
            "l_cls": l_cls,
            "g_clsp": g_clsp,
            "l_clsp": l_clsp,
        }
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def _update_centers(
        self,
        t_cls: Tensor,
        y_glob: Tensor,
        y_loc: Tensor | None,
        t_patch: Tensor,
        valid: Tensor,
        t_patch_local: Tensor | None,
        valid_local: Tensor | None,
    ) -> None:
        k = t_cls.shape[-1]
        self.centers[0].update(t_cls.reshape(-1, k))
        blended = y_glob.reshape(-1, k) if y_loc is None else torch.cat([y_glob.reshape(-1, k), y_loc.reshape(-1, k)])
        self.centers[1].update(blended)
        total = (t_patch * valid.unsqueeze(-1).float()).sum(dim=(0, 1, 2))
        count = valid.float().sum()
        if t_patch_local is not None and valid_local is not None:
            total = total + (t_patch_local.float() * valid_local.unsqueeze(-1).float()).sum(dim=(0, 1, 2, 3))
            count = count + valid_local.float().sum()
        # Per-rank weighted mean, then the mean over ranks (official: divide by count, all_reduce, / world).
        batch_center = distributed_mean((total / count.clamp(min=1.0)).unsqueeze(0))
        patch_center = self.centers[2]
        patch_center.center.mul_(patch_center.momentum).add_(batch_center, alpha=1.0 - patch_center.momentum)
