"""STELLAR: sparse semantic tokens × dense localisation map (Zhao et al., arXiv 2602.01905).

A port of ``STELLARModel`` (``microsoft/STELLAR``, ``src/models/stellar_model.py``; losses in
``src/losses/stellar_loss.py``) onto dssl's ViT backbone, whose extra tokens are STELLAR's r sparse
tokens. Per batch (B images):

* **full view** (clean global view 0, ``batch.clean[0]``): cls ``(B, D)``, sparse ``S (B, r, D)``, dense
  ``X (B, N, D)``; localisation ``L = softmax_r(cos(W_d X, W_s S)/0.06)``; low-rank map ``Z = L S``;
* **reconstruction**: ``Z`` -> projection + random-Fourier positions -> small ViT decoder -> pixels (MSE
  on the [0, 1] image, weight 10) or VQ code logits (CE, weight 0.05);
* **online clustering**: sparse tokens and ``[CLS]`` each through their own head; Sinkhorn–Knopp targets
  (τ 0.06, 3 iterations) of the same full view (no teacher by default) supervise predictions at τ 0.12
  (``clustering_loss``, ``cls_clustering_loss``);
* **masked views**: the first 8 colour-augmented global views with 80 % of the patches dropped (Gaussian
  focal keep sets); their sparse tokens are matched to the full view's by log-domain Sinkhorn OT and
  predict the matched token's assignment (``mask_loss``); their ``[CLS]`` and the 8 local crops'
  ``[CLS]`` predict the full view's ``[CLS]`` assignment (``cls_loss``);
* **KoLeo** (weight 0.1, distances × 0.5) on each image's sparse tokens, full and masked views;
* total = ``rec_coeff · L_rec + 1.0 · (koleo + clustering + cls_clustering + mask + cls)``.

Views are laid out image-major (row ``b·n + v``) as in the official code. The evaluated module's
``image_features`` is the mean of the sparse tokens (the official linear probe's input) and its
``features`` the dense or low-rank map (``eval_features``).

Example:
    >>> from dssl.plugin import ViTBackbone                                       # doctest: +SKIP
    >>> backbone = ViTBackbone("vit_t16", img_size=32, extra_tokens=16)             # doctest: +SKIP
    >>> objective = StellarObjective(backbone, {"num_clusters": 256}, total_steps=10)  # doctest: +SKIP
    >>> objective(view_batch, step=0)["loss"].backward()                            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from dssl.plugin import IMAGENET_MEAN, IMAGENET_STD, ConfigError, EMATeacher, Objective, koleo_loss, sinkhorn_match
from torch import Tensor, nn

from dssl_stellar.clustering import OnlineClustering
from dssl_stellar.config import StellarOptions
from dssl_stellar.decoder import ReconstructionDecoder
from dssl_stellar.localisation import SparseLocalisation, low_rank_map, peak_distribution
from dssl_stellar.masking import focal_mask
from dssl_stellar.stellar_loss import cluster_prediction_loss, total_loss

if TYPE_CHECKING:
    from dssl.plugin import ViewBatch

__all__ = ["StellarEvalBackbone", "StellarObjective"]


class StellarEvalBackbone(nn.Module):
    """What evaluators see: the encoder plus the localisation projections.

    Args:
        backbone: The trained ViT with ``r`` extra (sparse) tokens.
        localisation: The trained :class:`SparseLocalisation`.
        feature: ``"dense"`` (patch tokens) or ``"lowrank"`` (``L S``) for :meth:`features`.
    """

    def __init__(self, backbone: nn.Module, localisation: SparseLocalisation, feature: str = "dense") -> None:
        super().__init__()
        self.backbone = backbone
        self.localisation = localisation
        self.feature = feature

    @property
    def patch_size(self) -> int:
        """Patch size of the encoder."""
        return int(self.backbone.patch_size)

    @property
    def embed_dim(self) -> int:
        """Width of the features."""
        return int(self.backbone.embed_dim)

    def config(self) -> dict[str, Any]:
        """The encoder's constructor config (``backbone.pt`` rebuilds the encoder; its keys are prefixed
        ``backbone.``, which ``--init`` strips)."""
        return self.backbone.config()

    def forward(self, images: Tensor, **kwargs: Any) -> Any:
        """The encoder's :class:`~dssl.backbones.vit.TokenOutput`."""
        return self.backbone(images, **kwargs)

    def features(self, images: Tensor) -> Tensor:
        """``(B, h, w, D)`` dense patch tokens or the low-rank map, per ``feature``."""
        out = self.backbone(images)
        h, w = out.grid
        dense = out.patches
        if self.feature == "lowrank":
            dense = low_rank_map(self.localisation(dense, out.extra), out.extra)
        return dense.reshape(dense.shape[0], h, w, dense.shape[-1])

    def image_features(self, images: Tensor) -> Tensor:
        """``(B, D)`` mean of the sparse tokens (the official classification probe's input)."""
        return self.backbone(images).extra.mean(dim=1)


class StellarObjective(Objective):
    """The STELLAR objective (see the module docstring).

    Args:
        backbone: :class:`~dssl.backbones.vit.ViTBackbone` built with ``extra_tokens = num_sparse_tokens``.
        options: :class:`~dssl_stellar.config.StellarOptions`, a mapping of its fields, or ``None``.
        total_steps: Number of optimisation steps.

    Attributes:
        localisation: Dense/sparse projections of the localisation matrix.
        decoder: :class:`ReconstructionDecoder` or ``None`` (``reconstruction='none'``).
        sparse_head: :class:`OnlineClustering` of the sparse tokens.
        cls_head: :class:`OnlineClustering` of ``[CLS]`` or ``None``.
        teacher: :class:`EMATeacher` of backbone and heads, or ``None`` (the official default).
    """

    default_augmentation: ClassVar[str] = "stellar"

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The terms this configuration optimises (reconstruction, KoLeo and ``[CLS]`` terms are optional)."""
        o = self.options
        terms = ["clustering_loss"]
        if self.decoder is not None:
            terms.append("reconstruction")
        if o.koleo_weight > 0:
            terms.append("koleo_loss")
        if o.num_masks > 0:
            terms.append("mask_loss")
        if self.cls_head is not None:
            terms.append("cls_clustering_loss")
            if o.num_masks > 0 or o.num_local_crops > 0:
                terms.append("cls_loss")
        return tuple(terms)

    options_class: ClassVar[type[StellarOptions]] = StellarOptions
    options: StellarOptions

    @classmethod
    def extra_tokens(cls, options: Any) -> int:
        """The r sparse tokens are the backbone's extra tokens."""
        return int(cls.coerce_options(options).num_sparse_tokens)

    def __init__(
        self, backbone: nn.Module, options: StellarOptions | dict[str, Any] | None = None, *, total_steps: int
    ) -> None:
        super().__init__(backbone, options, total_steps=total_steps)
        o = self.options
        if int(getattr(backbone, "num_extra_tokens", 0)) != o.num_sparse_tokens:
            raise ConfigError(
                f"stellar needs a backbone with extra_tokens={o.num_sparse_tokens} (num_sparse_tokens), "
                f"got {getattr(backbone, 'num_extra_tokens', 0)}"
            )
        dim = int(getattr(backbone, "embed_dim"))  # noqa: B009 (documented backbone attribute)
        patch = int(getattr(backbone, "patch_size"))  # noqa: B009
        self.localisation = SparseLocalisation(dim, temperature=o.spatial_temp)
        self.decoder: ReconstructionDecoder | None = None
        if o.reconstruction != "none":
            self.decoder = ReconstructionDecoder(
                dim,
                patch_size=patch,
                dim=o.decoder_dim,
                depth=o.decoder_depth,
                num_heads=o.decoder_heads,
                mlp_ratio=o.decoder_mlp_ratio,
                codebook_size=o.vq_codebook_size if o.reconstruction == "vq" else None,
            )
        # Frozen and outside the module tree: never trained, never saved in checkpoints.
        self._tokenizer: Any = _load_tokenizer(o.vq_tokenizer) if o.reconstruction == "vq" else None
        head_kwargs = {
            "num_clusters": o.num_clusters,
            "prototype_dim": o.prototype_dim,
            "hidden_dim": o.predictor_hidden_dim,
            "predictor_layers": o.predictor_layers,
            "target_temp": o.sk_temp,
            "sk_iterations": o.sk_iterations,
            "sk_scale": o.sk_scale,
        }
        self.sparse_head = OnlineClustering(dim, **head_kwargs)
        self.cls_head = OnlineClustering(dim, **head_kwargs) if o.cls_clustering else None
        self.teacher = EMATeacher(self._student()) if o.momentum_teacher else None

    def _student(self) -> dict[str, nn.Module]:
        modules = {"backbone": self.backbone, "sparse_head": self.sparse_head}
        if self.cls_head is not None:
            modules["cls_head"] = self.cls_head
        return modules

    # ------------------------------------------------------------------ forward

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, Tensor]:
        """STELLAR losses of one batch.

        Args:
            batch: ``crops`` (globals first; the first ``num_masks`` globals become masked views, locals give
                ``[CLS]`` predictions) and ``clean`` (clean global view 0 is the full view; without
                ``clean`` the augmented global view 0 is used).
            step: Zero-based step (seeds the masks).

        Returns:
            ``loss`` and every term: ``reconstruction``, ``koleo_loss``, ``clustering_loss``,
            ``cls_clustering_loss``, ``mask_loss``, ``cls_loss``, plus ``peak_dist`` (mean localisation peak).
        """
        o = self.options
        crops = list(batch.crops)
        n_global = int(batch.n_global)
        image = batch.clean[0] if batch.clean is not None else crops[0]
        b = image.shape[0]

        out = self.backbone(image)
        cls, sparse, dense = out.cls, out.extra, out.patches
        localisation = self.localisation(dense, sparse)
        lowrank = low_rank_map(localisation, sparse)
        terms: dict[str, Tensor] = {}
        if o.koleo_weight > 0:
            terms["koleo_loss"] = o.koleo_weight * koleo_loss(sparse, distance_scale=o.koleo_distance_scale)
        if self.decoder is not None:
            terms["reconstruction"] = self._reconstruction(lowrank, out.grid, image)

        # Online clustering targets: the full view itself (official default) or an EMA teacher on global 1.
        logits = self.sparse_head(sparse)
        cls_logits = self.cls_head(cls.unsqueeze(1)) if self.cls_head is not None else None
        if self.teacher is None:
            assignments = self.sparse_head.targets(logits)
            terms["clustering_loss"] = cluster_prediction_loss(logits, assignments, temperature=o.pred_temp)
            cls_assignments = self.cls_head.targets(cls_logits) if self.cls_head is not None else None
            target_tokens = sparse.detach()
            full_index = None
        else:
            with torch.no_grad():
                t_out = self.teacher["backbone"](crops[1] if n_global > 1 else crops[0])
                assignments = self.teacher["sparse_head"].targets(self.teacher["sparse_head"](t_out.extra))
                cls_assignments = None
                if self.cls_head is not None:
                    t_cls = self.teacher["cls_head"](t_out.cls.unsqueeze(1))
                    cls_assignments = self.teacher["cls_head"].targets(t_cls)
            target_tokens = t_out.extra
            full_index = self._match(sparse, target_tokens)
            terms["clustering_loss"] = cluster_prediction_loss(
                logits, assignments, temperature=o.pred_temp, index=full_index
            )
        if cls_logits is not None and cls_assignments is not None:
            terms["cls_clustering_loss"] = cluster_prediction_loss(cls_logits, cls_assignments, temperature=o.pred_temp)

        n_masks = min(o.num_masks, n_global)
        if n_masks > 0:
            views = torch.stack(crops[:n_masks], dim=1).flatten(0, 1)  # image-major: row b * n + v
            grid = self.backbone.grid_size(views)
            mask = focal_mask(
                views.shape[0],
                grid,
                ratio=o.masking_ratio,
                mode=o.focal_mode,
                focal_p=o.focal_p,
                sigma=o.focal_sigma,
                generator=self._mask_generator(step),
            ).to(views.device)
            m_out = self.backbone(views, mask=mask, drop_masked=o.mask_mode == "drop")
            if o.koleo_weight > 0:
                terms["koleo_loss"] = terms["koleo_loss"] + o.koleo_weight * koleo_loss(
                    m_out.extra, distance_scale=o.koleo_distance_scale
                )
            index = self._match(m_out.extra, target_tokens)
            terms["mask_loss"] = cluster_prediction_loss(
                self.sparse_head(m_out.extra), assignments, temperature=o.pred_temp, index=index
            )
            if self.cls_head is not None and cls_assignments is not None:
                terms["cls_loss"] = cluster_prediction_loss(
                    self.cls_head(m_out.cls.unsqueeze(1)), cls_assignments, temperature=o.pred_temp
                )

        n_local = min(o.num_local_crops, len(crops) - n_global)
        if n_local > 0 and self.cls_head is not None and cls_assignments is not None:
            local = torch.stack(crops[n_global : n_global + n_local], dim=1).flatten(0, 1)
            l_cls = self.backbone(local).cls.unsqueeze(1)
            local_loss = cluster_prediction_loss(self.cls_head(l_cls), cls_assignments, temperature=o.pred_temp)
            terms["cls_loss"] = terms["cls_loss"] + local_loss if "cls_loss" in terms else local_loss

        loss = total_loss(terms, rec_coeff=o.reconstruction_weight(), reg_coeff=o.reg_coeff)
        logs = {k: v.detach().float() for k, v in terms.items()}
        logs["peak_dist"] = peak_distribution(localisation).float().mean()
        del b
        return {"loss": loss, **logs}

    def _reconstruction(self, lowrank: Tensor, grid: tuple[int, int], image: Tensor) -> Tensor:
        """MSE to the [0, 1] image (the official target; ours arrive ImageNet-normalised) or VQ-code CE."""
        assert self.decoder is not None
        mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pixels = image * std + mean
        prediction = self.decoder(lowrank, grid)
        if self._tokenizer is None:
            return F.mse_loss(prediction.float(), pixels.float())
        with torch.no_grad():
            self._tokenizer.to(pixels.device)
            codes = self._tokenizer(pixels.float()).long().reshape(pixels.shape[0], -1)
        if codes.shape[1] != prediction.shape[1]:
            raise ConfigError(
                f"vq_tokenizer gives {codes.shape[1]} codes per image but the patch grid has {prediction.shape[1]}"
            )
        return F.cross_entropy(prediction.float().transpose(1, 2), codes)

    def _match(self, queries: Tensor, targets: Tensor) -> Tensor | None:
        """OT match of each view's sparse tokens ``(B·n, r, D)`` to its image's target tokens ``(B, r, D)``."""
        if not self.options.token_matching:
            return None
        views = queries.shape[0] // targets.shape[0]
        expanded = targets.detach().unsqueeze(1).expand(-1, views, -1, -1).flatten(0, 1)
        index, _ = sinkhorn_match(
            queries, expanded, epsilon=self.options.ot_epsilon, n_iterations=self.options.ot_iterations
        )
        return index

    def _mask_generator(self, step: int) -> torch.Generator:
        """Masks are a function of (mask_seed, step, rank): reproducible, different on every rank."""
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return torch.Generator().manual_seed(self.options.mask_seed * 1_000_000_007 + step * 4096 + rank)

    # ------------------------------------------------------------------ engine hooks

    def after_step(self, *, step: int) -> None:
        """EMA update of the optional teacher (constant momentum, as the official ``update_teacher``)."""
        if self.teacher is not None:
            self.teacher.update(self._student(), self.options.teacher_momentum)

    def eval_backbone(self) -> nn.Module:
        """The student encoder with the localisation (official evaluation uses the trained model)."""
        return StellarEvalBackbone(self.backbone, self.localisation, self.options.eval_features)


def _load_tokenizer(path: str | None) -> Any:
    """A frozen TorchScript tokenizer from a local file (nothing is downloaded)."""
    if not path or not Path(path).expanduser().is_file():
        raise ConfigError(
            f"stellar reconstruction='vq': vq_tokenizer '{path}' is not a file; no tokenizer ships with dssl "
            "(export one to TorchScript: [0,1] images (B,3,H,W) -> code ids (B, h*w))"
        )
    try:
        module = torch.jit.load(str(Path(path).expanduser()), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"stellar vq_tokenizer '{path}': not a TorchScript module ({exc})") from exc
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
