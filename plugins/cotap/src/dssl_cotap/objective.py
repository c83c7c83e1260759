"""CoTAP objective (reconstructed): DINO self-distillation + λ · continuous-target AP over patch correspondences.

Paper: Wen et al., "Semantic Concentration for Self-Supervised Dense Representations Learning", TPAMI 2025,
arXiv 2509.09429 (code ``KID-7391/CoTAP``, not public). Reconstruction of methods.md §1.4, built on the core's
DINO (:class:`~dssl.objectives.dino.DINOObjective`: DINOLoss, DINOHead, EMATeacher, Center, schedules and
``forward_views`` are reused, not rewritten):

* image level: DINO's loss on the ``[CLS]`` token of all views, exactly as the ``dino`` objective;
* patch level: last-layer patch tokens → projector ``g`` (MLP) → L2-normalise → filter (identity, or the
  Object-Aware Filter of ``dssl-oaf``) → :class:`~dssl_cotap.cotap_loss.CoTAPLoss` between image pairs, with
  teacher similarity maps (EMA backbone, projector and filter) as continuous targets. Pairs: the two global views
  of one image (optionally with the geometric correspondence from the crop boxes) and global view 0 of an image
  with that of its nearest neighbour in the batch;
* the EMA teacher covers backbone, DINO head, projector and filter; the teacher backbone is evaluated.

CoTAP post-trains a pretrained checkpoint (``--init``, a DINO checkpoint in the paper's main results).

Example:
    >>> from dssl.plugin import ViTBackbone                           # doctest: +SKIP
    >>> backbone = ViTBackbone("vit_t16", img_size=32)                   # doctest: +SKIP
    >>> objective = CoTAPObjective(backbone, {"out_dim": 64}, total_steps=10)  # doctest: +SKIP
    >>> out = objective(view_batch, step=0); out["loss"].backward()     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from dssl.plugin import (
    MLP,
    DINOObjective,
    EMATeacher,
    forward_views,
    patch_correspondence,
    schedule_scalar,
    set_drop_path_rate,
)
from torch import nn

from dssl_cotap.config import CoTAPOptions
from dssl_cotap.cotap_loss import CoTAPLoss
from dssl_cotap.filters import build_filter

if TYPE_CHECKING:
    from dssl.plugin import ViewBatch

__all__ = ["CoTAPObjective"]


class CoTAPObjective(DINOObjective):
    """DINO + λ·CoTAP (module docstring).

    Args:
        backbone: Student ViT backbone (``TokenOutput`` with ``.cls`` and ``.patches``).
        options: :class:`~dssl_cotap.config.CoTAPOptions`, a mapping of its fields, or ``None``.
        total_steps: Number of optimisation steps.

    Attributes:
        patch_head: Projector ``(B, N, D) -> (B, N, patch_dim)`` (``nn.Identity`` with 0 layers).
        filter: Patch filter ``(B, N, patch_dim) -> (B, N, filter.out_dim)`` (identity or OAF).
        cotap_loss: :class:`CoTAPLoss`.
        teacher: EMA of ``backbone``, ``head``, ``patch_head`` and ``filter``.
    """

    options_class: ClassVar[type[CoTAPOptions]] = CoTAPOptions  # type: ignore[assignment]
    options: CoTAPOptions

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The DINO term and the CoTAP ranking term."""
        return ("dino_loss", "cotap_loss")

    def __init__(
        self, backbone: nn.Module, options: CoTAPOptions | dict[str, Any] | None = None, *, total_steps: int
    ) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        o = self.options
        embed_dim = int(getattr(backbone, "embed_dim"))  # noqa: B009 (documented backbone attribute)
        if o.patch_head_layers == 0:
            self.patch_head: nn.Module = nn.Identity()
            patch_dim = embed_dim
        else:
            self.patch_head = MLP(embed_dim, o.patch_dim, hidden_dim=o.patch_hidden_dim, nlayers=o.patch_head_layers)
            patch_dim = o.patch_dim
        self.filter = build_filter(o.filter, patch_dim, o.filter_options)
        # DINOObjective built its teacher before the patch modules existed: rebuild it over all student modules.
        self.teacher = EMATeacher(self._student(), eval_mode=not o.use_bn_in_head)
        if o.use_bn_in_head:
            set_drop_path_rate(self.teacher["backbone"], 0.0)
        self.cotap_loss = CoTAPLoss(
            target=o.target,
            target_temp=o.target_temp,
            rank_temp=o.rank_temp,
            min_target=o.min_target,
            geometry=o.geometry,
            num_candidates=o.num_candidates,
            chunk_size=o.chunk_size,
        )

    @property
    def method_label(self) -> str:
        """``cotap`` or, with a patch filter, ``cotap+<filter>`` (``cotap+oaf``): different methods on a leaderboard."""
        return "cotap" if self.options.filter == "identity" else f"cotap+{self.options.filter}"

    def _student(self) -> dict[str, nn.Module]:
        modules = super()._student()
        for name in ("patch_head", "filter"):
            if name in self._modules:  # absent while DINOObjective.__init__ builds its (replaced) teacher
                modules[name] = self._modules[name]  # type: ignore[assignment]
        return modules

    def _embed(self, patches: torch.Tensor, *, teacher: bool) -> torch.Tensor:
        """``(B, N, D)`` patch tokens → filtered patch embeddings ``(B, N, D_f)`` (student or teacher)."""
        head = self.teacher["patch_head"] if teacher else self.patch_head
        filt = self.teacher["filter"] if teacher else self.filter
        return filt(F.normalize(head(patches), dim=-1))

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, torch.Tensor]:
        """DINO loss + λ·CoTAP loss of a batch of views (updates the DINO centre in training mode).

        Args:
            batch: ``crops`` ``V × (B, 3, h_v, w_v)``, globals first; ``boxes`` ``(B, V, 4)``, ``flips`` ``(B, V)``.
            step: Zero-based global step.

        Returns:
            ``{"loss", "dino_loss", "cotap_loss", "cotap_ap", "cotap_masked", "cotap_target_mass",
            "cotap_target_mass_fraction", "teacher_temp"}`` scalars, all logged every log step;
            ``cotap_target_mass_fraction`` near 1 means the filtered teacher outputs collapsed (see
            :meth:`CoTAPLoss.forward`).
        """
        o = self.options
        crops = list(batch.crops)
        n_global = int(batch.n_global)
        n_views, b = len(crops), crops[0].shape[0]
        temp = schedule_scalar(self.teacher_temp_schedule, step)  # a tensor: compiled losses do not recompile
        with torch.no_grad():
            t_out = forward_views(self.teacher["backbone"], crops[:n_global])
            t_logits = self.teacher["head"](torch.cat([out.cls for out in t_out]))
        s_out = forward_views(self.backbone, crops)
        s_logits = self.head(torch.cat([out.cls for out in s_out]))
        dino_loss = self.loss_fn(
            s_logits.view(n_views, b, -1),
            t_logits.view(n_global, b, -1),
            teacher_temp=temp,
            update_center=self.training,
        )
        cotap = self._cotap(batch, s_out, t_out)
        loss = dino_loss + o.cotap_weight * cotap["loss"]
        out = {"loss": loss, "dino_loss": dino_loss.detach(), "teacher_temp": temp}
        out |= {f"cotap_{k}": v.detach() for k, v in cotap.items()}
        return out

    def _cotap(self, batch: ViewBatch, s_out: list[Any], t_out: list[Any]) -> dict[str, torch.Tensor]:
        """Mean CoTAP terms over the configured image pairs.

        Raises:
            ValueError: The batch offers none of the configured pairs ('views' needs two global crops, 'nn' a
                batch of at least two images): training would silently be DINO alone.
        """
        o = self.options
        n_global = int(batch.n_global)
        student = [self._embed(s_out[v].patches, teacher=False) for v in range(min(2, n_global))]
        with torch.no_grad():
            teacher = [self._embed(t_out[v].patches, teacher=True) for v in range(min(2, n_global))]
        terms: list[dict[str, torch.Tensor]] = []
        if "views" in o.pairs and n_global >= 2:
            grid_u, grid_v = tuple(s_out[0].grid), tuple(s_out[1].grid)
            boxes, flips = batch.boxes.to(student[0].device), batch.flips.to(student[0].device)
            uv = patch_correspondence(boxes[:, 1], flips[:, 1], grid_v, boxes[:, 0], flips[:, 0], grid_u)
            vu = patch_correspondence(boxes[:, 0], flips[:, 0], grid_u, boxes[:, 1], flips[:, 1], grid_v)
            terms.append(self.cotap_loss(student[0], student[1], teacher[0], teacher[1], uv, vu))
        b = student[0].shape[0]
        if "nn" in o.pairs and b >= 2:
            with torch.no_grad():  # STEGO's neighbour criterion: pooled, L2-normalised teacher patch features
                pooled = F.normalize(t_out[0].patches.float().mean(dim=1), dim=-1)
                sim = pooled @ pooled.T
                sim.fill_diagonal_(float("-inf"))
                nn_index = sim.argmax(dim=1)
            terms.append(self.cotap_loss(student[0], student[0][nn_index], teacher[0], teacher[0][nn_index]))
        if not terms:
            raise ValueError(
                f"CoTAP: this batch has no image pair for pairs={o.pairs} ({n_global} global crop(s), {b} image(s)); "
                "'views' needs 2 global crops, 'nn' a batch of at least 2 images. Without a pair only DINO's loss "
                "would be trained"
            )
        return {k: torch.stack([t[k] for t in terms]).mean() for k in terms[0]}
