"""Hook specifications of the dssl plugin API.

Two families of hooks:

* **Contribution hooks** (``dssl_register_*``) receive a :class:`~dssl.registry.KindRegistry` bound to
  one component kind and add **lazy** entries to it (``"package.module:attr"`` strings), so that listing
  components never imports torch.
* **Lifecycle hooks** (``dssl_run_*``, ``dssl_metrics_logged``, ``dssl_evaluation_finished``) are
  called 1:N for trackers and tools while a run progresses.

Every hook is called with keyword arguments only. New arguments are only ever added as optional
ones, so an implementation may accept any subset of a hook's arguments (pluggy's opt-in arguments)
and keeps working when the API grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from dssl import PROJECT_NAME

if TYPE_CHECKING:
    from dssl.registry import KindRegistry
    from dssl.results import EvaluationResult, RunInfo, RunResults

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --- contribution hooks -------------------------------------------------------------------------


@hookspec
def dssl_register_backbones(registry: KindRegistry) -> None:
    """Add backbone entries: factories ``(*, name, timm_name, img_size, extra_tokens, **options) -> nn.Module``
    whose forward returns a ``dssl.plugin.TokenOutput`` (see ``dssl.plugin.Backbone``)."""


@hookspec
def dssl_register_objectives(registry: KindRegistry) -> None:
    """Add objective entries: ``dssl.plugin.Objective`` subclasses built as
    ``Objective(backbone, options, total_steps=T)``, called as ``objective(batch, step=step)``."""


@hookspec
def dssl_register_augmentations(registry: KindRegistry) -> None:
    """Add augmentation entries: built as ``Augmentation(options)``, called as
    ``augmentation(image, generator=generator) -> dssl.plugin.Views`` (views with their geometry)."""


@hookspec
def dssl_register_evaluators(registry: KindRegistry) -> None:
    """Add evaluator entries: built as ``Evaluator(options)``; ``evaluate(*, features, train, val, dataset_name,
    device, progress) -> dssl.plugin.EvaluationResult`` consumes frozen features (see ``dssl.plugin.Evaluator``)."""


@hookspec
def dssl_register_datasets(registry: KindRegistry) -> None:
    """Add dataset entries: factories ``build(options, *, split, data_root) -> dataset`` of items
    ``{"image", "mask", "label"}`` (see ``dssl.plugin.DenseDataset``)."""


# --- lifecycle hooks ----------------------------------------------------------------------------


@hookspec
def dssl_run_started(run: RunInfo, config: Mapping[str, Any]) -> None:
    """A run has started; ``config`` is the fully resolved run configuration as a plain mapping."""


@hookspec
def dssl_metrics_logged(run: RunInfo, metrics: Mapping[str, float], step: int) -> None:
    """A batch of training metrics was logged at ``step``."""


@hookspec
def dssl_evaluation_finished(run: RunInfo, result: EvaluationResult) -> None:
    """One evaluator finished; ``result`` carries its protocol id, version, settings and metrics."""


@hookspec
def dssl_run_finished(run: RunInfo, status: str, results: RunResults | None) -> None:
    """A run ended with ``status`` FINISHED, FAILED or KILLED; ``results`` is None unless FINISHED."""


CONTRIBUTION_HOOKS: dict[str, str] = {
    "backbone": "dssl_register_backbones",
    "objective": "dssl_register_objectives",
    "augmentation": "dssl_register_augmentations",
    "evaluator": "dssl_register_evaluators",
    "dataset": "dssl_register_datasets",
}
