"""CoTAP: average precision with continuous targets, relaxed with a sigmoid (reconstruction, methods.md §1.4).

Paper: Wen et al., "Semantic Concentration for Self-Supervised Dense Representations Learning", TPAMI 2025,
arXiv 2509.09429. The abstract extends the AP loss "to continuous targets, such that its decision-agnostic and
adaptive focusing properties prevent the student model from being misled"; the formula is not public, so this
is the graded-relevance AP that reduces exactly to AP for binary targets, with Smooth-AP's sigmoid ranking
(Brown et al., ECCV 2020). For a query ``i`` with student scores ``S_i·`` and targets ``Y_i· ∈ [0, 1]``::

    D_ijk   = sigmoid((S_ik − S_ij) / τ_r)                  soft "k ranked above j"
    Rall_ij = 1 + Σ_{k≠j} D_ijk
    Rpos_ij = Y_ij + Σ_{k≠j} Y_ik · D_ijk
    AP_i    = Σ_j Y_ij · Rpos_ij / Rall_ij  /  (Σ_j Y_ij + eps)
    L       = 1 − mean over unmasked queries (both directions) of AP_i

With binary ``Y`` and ``τ_r → 0`` this is AP (precision at each positive, averaged over positives).

Memory: the ranking tensor ``D`` has ``Q·M·M`` entries (``Q = B·N`` queries; 1.9 GB in float32 for B = 64,
N = M = 196). :func:`continuous_target_ap` computes it for ``chunk_size`` (query, item j) rows at a time, only
for rows with ``Y_ij > 0`` (the others contribute exactly 0), and checkpoints each chunk so that backward
recomputes ``D`` instead of storing it: peak memory ``O(chunk_size · M + Q · M)``, linear in M at a fixed chunk
size, same values and gradients as the unchunked formula up to float32 summation order. Everything is computed
in float32, also under autocast.

Example:
    >>> import torch
    >>> s = torch.tensor([[0.9, 0.1, 0.5]]); y = torch.tensor([[1.0, 0.0, 1.0]])
    >>> round(float(continuous_target_ap(s, y, temperature=1e-4)[0]), 4)   # perfect ranking
    1.0
    >>> loss = CoTAPLoss()(torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["CoTAPLoss", "continuous_target_ap", "continuous_targets"]

TargetKind = Literal["softmax_max", "clamp"]
GeometryMode = Literal["none", "positive", "mask"]


def continuous_targets(similarity: Tensor, kind: TargetKind = "softmax_max", temperature: float = 0.1) -> Tensor:
    """Continuous targets in ``[0, 1]`` from teacher similarities (methods.md §1.4 options 1 and 2).

    Args:
        similarity: ``(..., M)`` teacher cosine similarities of a query to the ``M`` candidates.
        kind: ``"softmax_max"``: ``softmax(T/τ)/max softmax(T/τ) = exp((T − max T)/τ)`` (best candidate 1);
            ``"clamp"``: ``clamp(T, 0, 1)``.
        temperature: ``τ`` of ``"softmax_max"``.

    Returns:
        ``(..., M)`` float32 targets, detached.
    """
    t = similarity.detach().float()
    if kind == "softmax_max":
        return torch.exp((t - t.amax(dim=-1, keepdim=True)) / temperature)
    if kind == "clamp":
        return t.clamp(0.0, 1.0)
    raise ValueError(f"unknown target kind {kind!r}")


def _row_contributions(scores: Tensor, targets: Tensor, q: Tensor, j: Tensor, temperature: float) -> Tensor:
    """``Y_qj · Rpos_qj / Rall_qj`` for rows ``(q, j)``: ``(c,)``; the ``(c, M)`` ranking block is local."""
    s = scores.index_select(0, q)  # (c, M)
    y = targets.index_select(0, q)
    s_j = s.gather(1, j[:, None])  # (c, 1)
    y_j = y.gather(1, j[:, None]).squeeze(1)
    d = torch.sigmoid((s - s_j) / temperature)  # D_qjk for all k; k = j gives sigmoid(0) = 0.5 exactly
    r_all = 0.5 + d.sum(dim=1)  # 1 + Σ_{k≠j} D
    r_pos = 0.5 * y_j + (d * y).sum(dim=1)  # Y_qj + Σ_{k≠j} Y_qk D
    return y_j * r_pos / r_all


def continuous_target_ap(
    scores: Tensor,
    targets: Tensor,
    *,
    temperature: float = 0.01,
    chunk_size: int | None = 16384,
    eps: float = 1e-8,
) -> Tensor:
    """Sigmoid-relaxed graded-relevance AP of each query (module docstring formula).

    Args:
        scores: ``(Q, M)`` student scores of ``Q`` queries against ``M`` candidates.
        targets: ``(Q, M)`` continuous targets in ``[0, 1]`` (no gradient flows into them).
        temperature: ``τ_r`` of the sigmoid (Smooth-AP: 0.01).
        chunk_size: Rows ``(q, j)`` per chunk (each checkpointed when gradients are needed); ``None``: the
            unchunked ``(Q, M, M)`` computation (reference; memory ``O(Q·M²)``).
        eps: Guards ``Σ_j Y_qj = 0`` (such queries get AP 0 and should be masked by the caller).

    Returns:
        ``(Q,)`` float32 AP per query, in ``[0, 1]``.
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        s = scores.float()
        y = targets.detach().float()
        denom = y.sum(dim=1) + eps
        if chunk_size is None:
            d = torch.sigmoid((s[:, None, :] - s[:, :, None]) / temperature)  # (Q, j, k)
            r_all = 0.5 + d.sum(dim=2)
            r_pos = 0.5 * y + (d * y[:, None, :]).sum(dim=2)
            return (y * r_pos / r_all).sum(dim=1) / denom
        rows = (y > 0).nonzero()  # rows with Y_qj = 0 contribute exactly 0 (value and gradient)
        numer = s.new_zeros(s.shape[0])
        use_checkpoint = torch.is_grad_enabled() and s.requires_grad
        for start in range(0, rows.shape[0], chunk_size):
            q, j = rows[start : start + chunk_size].unbind(dim=1)
            if use_checkpoint:
                part = checkpoint(_row_contributions, s, y, q, j, temperature, use_reentrant=False)
            else:
                part = _row_contributions(s, y, q, j, temperature)
            numer = numer.index_add(0, q, part)
        return numer / denom


class CoTAPLoss(nn.Module):
    """CoTAP loss between two images' patch embeddings, both directions (module docstring).

    Args:
        target: Target option (:func:`continuous_targets`).
        target_temp: ``τ_t`` of the ``"softmax_max"`` targets.
        rank_temp: ``τ_r`` of the sigmoid ranking.
        min_target: Queries whose best *raw* teacher similarity (cosine, before the targets are normalised)
            is ``<=`` this are masked: a patch without a real match in the other image (hidden in the other
            view, an object missing from the neighbour image) is not forced to rank its best noisy match
            first. (With ``"softmax_max"`` every query's best target is exactly 1, so a threshold on the
            targets would never mask anything.)
        geometry: With a correspondence: ``"none"`` (default) ignores it, the teacher maps are the only
            targets; ablations: ``"positive"`` sets the target of the corresponding patch to 1, ``"mask"``
            keeps only queries with a valid correspondence.
        num_candidates: Random candidates kept per query image (``None``: all).
        chunk_size: See :func:`continuous_target_ap`.

    Example:
        >>> import torch
        >>> loss_fn = CoTAPLoss(target="clamp")
        >>> su, sv = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 6, 8)
        >>> loss = loss_fn(su, sv, su.detach(), sv)["loss"]; loss.backward()
    """

    def __init__(
        self,
        *,
        target: TargetKind = "softmax_max",
        target_temp: float = 0.1,
        rank_temp: float = 0.01,
        min_target: float = 0.5,
        geometry: GeometryMode = "none",
        num_candidates: int | None = None,
        chunk_size: int | None = 16384,
    ) -> None:
        super().__init__()
        self.target = target
        self.target_temp = target_temp
        self.rank_temp = rank_temp
        self.min_target = min_target
        self.geometry = geometry
        self.num_candidates = num_candidates
        self.chunk_size = chunk_size

    def direction(
        self,
        student_q: Tensor,
        student_c: Tensor,
        teacher_q: Tensor,
        teacher_c: Tensor,
        correspondence: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """AP of the queries of one image against the candidates of the other.

        Args:
            student_q: ``(B, N, D)`` L2-normalised student embeddings of the query image's patches.
            student_c: ``(B, M, D)`` same for the candidate image.
            teacher_q: ``(B, N, D_t)`` L2-normalised teacher embeddings (no gradient).
            teacher_c: ``(B, M, D_t)``.
            correspondence: Optional ``(index (B, N) long, valid (B, N) bool)``: candidate patch at the same
                image point as each query patch.

        Returns:
            ``(ap (B, N), mask (B, N) bool, targets (B, N, M'))``.
        """
        with torch.autocast(device_type=student_q.device.type, enabled=False):
            s = torch.bmm(student_q.float(), student_c.float().transpose(1, 2))  # (B, N, M)
            with torch.no_grad():
                t = torch.bmm(teacher_q.float(), teacher_c.float().transpose(1, 2))
                y = continuous_targets(t, self.target, self.target_temp)
            b, n, m = s.shape
            # On the raw similarity: after "softmax_max" every query's best target is 1.
            mask = t.amax(dim=2) > self.min_target
            if correspondence is not None and self.geometry != "none":
                index, valid = correspondence
                if self.geometry == "positive":
                    hit = torch.zeros_like(y).scatter(2, index[..., None], valid[..., None].float())
                    y = torch.maximum(y, hit)
                else:
                    mask = mask & valid
            if self.num_candidates is not None and self.num_candidates < m:
                keep = torch.rand(b, m, device=s.device).argsort(dim=1)[:, : self.num_candidates]
                keep = keep[:, None, :].expand(b, n, -1)
                s, y = s.gather(2, keep), y.gather(2, keep)
            mask = mask & (y.amax(dim=2) > 0)  # a query needs a positive target to have an AP
            y = y * mask[..., None]  # masked queries: no rows computed
            ap = continuous_target_ap(
                s.reshape(b * n, -1), y.reshape(b * n, -1), temperature=self.rank_temp, chunk_size=self.chunk_size
            ).view(b, n)
        return ap, mask, y

    def forward(
        self,
        student_u: Tensor,
        student_v: Tensor,
        teacher_u: Tensor,
        teacher_v: Tensor,
        correspondence_uv: tuple[Tensor, Tensor] | None = None,
        correspondence_vu: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``1 − mean AP`` over the unmasked queries of both directions (u→v and v→u).

        Args:
            student_u: ``(B, N, D)`` student patch embeddings of image u (normalised here).
            student_v: ``(B, M, D)`` of image v.
            teacher_u: ``(B, N, D)`` teacher patch embeddings of u (no gradient; normalised here).
            teacher_v: ``(B, M, D)``.
            correspondence_uv: ``(index (B, N), valid (B, N))`` patch of v for each patch of u, or ``None``.
            correspondence_vu: ``(index (B, M), valid (B, M))`` patch of u for each patch of v, or ``None``.

        Returns:
            ``{"loss": scalar, "ap": mean AP, "masked": fraction of masked queries, "target_mass": mean Σ_j Y,
            "target_mass_fraction": mean Σ_j Y / M}`` (over the unmasked queries). ``target_mass_fraction`` is
            the collapse monitor: 1.0 when every candidate ties with the best one (a constant filter or
            projector output: AP ≡ 1, no gradient), ``1/M`` when each query has one clear match.
        """
        with torch.autocast(device_type=student_u.device.type, enabled=False):
            su, sv = F.normalize(student_u.float(), dim=-1), F.normalize(student_v.float(), dim=-1)
            tu, tv = F.normalize(teacher_u.detach().float(), dim=-1), F.normalize(teacher_v.detach().float(), dim=-1)
            ap_uv, mask_uv, y_uv = self.direction(su, sv, tu, tv, correspondence_uv)
            ap_vu, mask_vu, y_vu = self.direction(sv, su, tv, tu, correspondence_vu)
            ap = torch.cat([ap_uv.flatten(), ap_vu.flatten()])
            mask = torch.cat([mask_uv.flatten(), mask_vu.flatten()])
            count = mask.sum()
            mean_ap = (ap * mask).sum() / count.clamp_min(1)
            mass = torch.cat([y_uv.sum(2).flatten(), y_vu.sum(2).flatten()])
            fraction = torch.cat([y_uv.mean(2).flatten(), y_vu.mean(2).flatten()])
            return {
                "loss": 1.0 - mean_ap,
                "ap": mean_ap.detach(),
                "masked": 1.0 - count.float() / mask.numel(),
                "target_mass": ((mass * mask).sum() / count.clamp_min(1)).detach(),
                "target_mass_fraction": ((fraction * mask).sum() / count.clamp_min(1)).detach(),
            }
