"""The objective contract between the training engine and an SSL method.

An objective is an ``nn.Module`` built from a backbone (the student, which it trains) and its validated
options. It owns everything else (heads, EMA teacher, centres, schedules). The engine drives it like this::

    objective = MyObjective(backbone, options, total_steps=T)
    optimizer = AdamW(objective.param_groups())       # lr / wd scaled per group (see below)
    for step in range(T):
        out = objective(batch, step=step)             # dict of scalar tensors, out["loss"] is optimised
        out["loss"].backward()
        objective.before_optimizer_step(step=step)    # e.g. DINO's frozen last layer in the first epoch
        optimizer.step(); optimizer.zero_grad()
        objective.after_step(step=step)               # e.g. EMA teacher update
    features = objective.eval_backbone()              # evaluated frozen

Parameter groups follow DINO's ``utils.get_params_groups``: biases and every 1-d parameter (norm weights)
get no weight decay. Each group is a dict with ``params``, ``name``, ``weight_decay_scale`` (multiplies the
engine's scheduled weight decay) and ``lr_scale`` (multiplies its scheduled learning rate).

Example:
    >>> class Identity(Objective):
    ...     def forward(self, batch, *, step):
    ...         return {"loss": self.backbone(batch.crops[0]).cls.pow(2).mean()}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dssl.augment.multicrop import ViewBatch

__all__ = ["Objective", "backbone_blocks", "decay_param_groups"]


def backbone_blocks(module: nn.Module) -> list[nn.Module]:
    """The transformer block stack of every backbone inside ``module`` (student, EMA teacher), in module order.

    A backbone is a submodule with ``patch_size`` and ``embed_dim`` (the :class:`~dssl.backbones.tokens.Backbone`
    contract); its stack is its ``blocks`` module when it has one (dssl's ViT: timm's ``nn.Sequential``, which
    :meth:`~dssl.backbones.vit.ViTBackbone.run_blocks` calls once for all blocks). The stack, not each block,
    is the unit: blocks differ in their stochastic-depth rate, a Python float that compiled code would guard
    on, so per-block compilation would recompile for every block.

    Args:
        module: Usually an objective.

    Returns:
        The block stacks; empty when no backbone has ``blocks``.
    """
    stacks: list[nn.Module] = []
    for sub in module.modules():
        blocks = getattr(sub, "blocks", None)
        if hasattr(sub, "patch_size") and hasattr(sub, "embed_dim") and isinstance(blocks, nn.Module):
            stacks.append(blocks)
    return stacks


def decay_param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    *,
    name: str = "",
    lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Split trainable parameters into a weight-decayed and a non-decayed group (DINO's rule).

    A parameter is not decayed when its name ends with ``.bias`` (or is ``bias``) or it is 1-d (norm
    weights/biases); everything else (including ``cls_token``/``pos_embed`` and the weight-norm gain
    ``(out_dim, 1)``) is decayed, exactly as ``utils.get_params_groups``. Frozen parameters are skipped,
    as are empty groups.

    Args:
        named_parameters: ``(name, parameter)`` pairs, e.g. ``module.named_parameters()``.
        name: Prefix of the group names (``"<name>regularized"`` / ``"<name>not_regularized"``).
        lr_scale: Learning-rate multiplier of both groups.

    Returns:
        Up to two dicts with ``params``, ``name``, ``weight_decay_scale`` (1.0 / 0.0) and ``lr_scale``.
    """
    regularized: list[nn.Parameter] = []
    not_regularized: list[nn.Parameter] = []
    seen: set[int] = set()
    for pname, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if pname.endswith(".bias") or pname == "bias" or param.ndim == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    groups = [
        {"params": regularized, "name": f"{name}regularized", "weight_decay_scale": 1.0},
        {"params": not_regularized, "name": f"{name}not_regularized", "weight_decay_scale": 0.0},
    ]
    return [{**g, "lr_scale": lr_scale} for g in groups if g["params"]]


class Objective(nn.Module):
    """Base class of SSL objectives (see the module docstring for how the engine calls it).

    Subclasses implement :meth:`forward` and usually :meth:`after_step`; the other methods have sensible
    defaults.

    Args:
        backbone: The student backbone (a ``dssl.backbones`` module returning ``TokenOutput``); trained.
        options: The objective's options (an instance of :attr:`options_class`; a mapping or ``None`` is
            validated into one when :attr:`options_class` is set).
        total_steps: Number of optimisation steps of the run (for per-step schedules).

    Attributes:
        default_augmentation: Name of the augmentation the engine uses unless told otherwise.
        options_class: The pydantic options model (optional; lets ``options`` be a dict or ``None``).
        backbone: The student backbone.
        options: The validated options.
        total_steps: As given.
    """

    default_augmentation: ClassVar[str] = "multicrop"
    options_class: ClassVar[type[BaseModel] | None] = None

    def __init__(self, backbone: nn.Module, options: Any, *, total_steps: int) -> None:
        super().__init__()
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.backbone = backbone
        self.options = self.coerce_options(options)
        self.total_steps = int(total_steps)

    @classmethod
    def coerce_options(cls, options: Any) -> Any:
        """Validate ``None`` / a mapping into :attr:`options_class`; other values are returned unchanged."""
        if cls.options_class is None:
            return options
        if options is None:
            return cls.options_class()
        if isinstance(options, Mapping):
            return cls.options_class.model_validate(dict(options))
        return options

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """Keys of :meth:`forward`'s output that are the terms the loss is made of; default ``("loss",)``.

        A term that sits at exactly 0 (or stops reaching the backbone) is a part of the method that stopped
        learning, as CoTAP's ranking term did under a collapsed filter: the learning tests check each one.
        """
        return ("loss",)

    @property
    def method_label(self) -> str:
        """The method's name on leaderboards when a variant of the objective is a different method (CoTAP with
        OAF: ``"cotap+oaf"``). ``""`` (the default): the objective's registered name, which the runner uses."""
        return ""

    @classmethod
    def extra_tokens(cls, options: Any) -> int:
        """Number of extra learnable prefix tokens the backbone must provide (UDI: 1). Default 0."""
        return 0

    def forward(self, batch: ViewBatch, *, step: int) -> dict[str, torch.Tensor]:
        """Losses of one batch of views.

        Args:
            batch: The collated views (``crops``, globals first; ``boxes``, ``flips``, ``clean``,
                ``n_global``).
            step: Zero-based global optimisation step.

        Returns:
            Scalar tensors; ``"loss"`` is optimised, every other entry is logged.
        """
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups over the trainable parameters (DINO's no-decay rule, see
        :func:`decay_param_groups`)."""
        return decay_param_groups(self.named_parameters())

    def compile_modules(self) -> list[nn.Module]:
        """Modules the engine compiles when the run sets ``compile: true`` (see :mod:`dssl.engine.compilation`).

        Default: the transformer block stack of every backbone (student and teacher, see
        :func:`backbone_blocks`). Override to add modules whose forward is one clean graph, typically the loss
        (``[*super().compile_modules(), self.loss_fn]``); leave out modules with data-dependent Python
        (``int(tensor)``, ``nonzero`` row selection), which would break the graph on every call. Schedules and
        the step number must not be read inside them: pass a value that changes per step in as a 0-d tensor
        (:func:`~dssl.layers.schedules.schedule_scalar`; a float is a constant of the compiled graph).
        """
        return backbone_blocks(self)

    def before_optimizer_step(self, *, step: int) -> None:
        """Called after ``backward`` and gradient clipping, before ``optimizer.step()``. Default: no-op."""

    def after_step(self, *, step: int) -> None:
        """Called after ``optimizer.step()`` (EMA teachers, queues, ...). Default: nothing."""

    def eval_backbone(self) -> nn.Module:
        """The backbone whose frozen features are evaluated. Default: the student backbone."""
        return self.backbone

    def load_init_extras(self, path: str) -> str | None:
        """Load what an ``--init`` checkpoint file holds beyond the backbone (called after the backbone was
        initialised from it), e.g. DINO's projection head. Default: nothing.

        Args:
            path: The checkpoint file.

        Returns:
            A short note for the run's init report, or ``None`` when nothing was loaded.
        """
        return None

    def state_for_checkpoint(self) -> dict[str, Any]:
        """Everything needed to resume (weights, teacher, centres, queues). Default: ``state_dict()``."""
        return self.state_dict()

    def load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_for_checkpoint` returned. Default: strict ``load_state_dict``."""
        self.load_state_dict(state)
