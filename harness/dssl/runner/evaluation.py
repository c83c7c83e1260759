"""Evaluating frozen features of a built run with its evaluators, and its baselines (start, random init)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from dssl.host import PluginHost
from dssl.results import EvaluationResult, RunInfo
from dssl.runner.build import BuiltRun, build_backbone, component_options


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def evaluate_backbone(
    built: BuiltRun,
    host: PluginHost,
    *,
    backbone: nn.Module | None = None,
    tracker: Any = None,
    info: RunInfo | None = None,
    console: Any = None,
) -> list[EvaluationResult]:
    """Evaluate frozen features with the run's evaluators, exactly as ``dssl bench`` does after training.

    Args:
        built: The built run (its configuration, evaluation datasets and device).
        host: Plugin host (evaluator registry and lifecycle hooks).
        backbone: The backbone to evaluate; default: :meth:`BuiltRun.evaluated_backbone` (DINO: the teacher).
        tracker: Where each result is logged as it arrives, followed by the ``dssl_evaluation_finished``
            hook; default: nowhere and no hook (the results are only returned).
        info: The run's identity for the lifecycle hooks.
        console: Rich console for the evaluators' progress; default: stderr.

    Returns:
        One :class:`~dssl.results.EvaluationResult` per configured evaluator, in order.
    """
    from rich.console import Console

    from dssl.engine.progress import StageProgress
    from dssl.engine.trainer import autocast_dtype

    config = built.config
    backbone = backbone if backbone is not None else built.evaluated_backbone()
    console = console if console is not None else Console(stderr=True)
    amp = autocast_dtype(config.precision, built.device)

    def frozen(method: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(images: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                images = images.to(built.device, non_blocking=True)
                with torch.autocast(built.device.type, dtype=amp) if amp else contextlib.nullcontext():
                    return method(images).float()

        return call

    feature_functions = {"dense": frozen(backbone.features), "image": frozen(image_feature_method(backbone))}

    from dssl.evaluators.extraction import feature_cache

    results = []
    # Evaluators that extract the same frozen features (same dataset, split, sizes, dtype) share one pass.
    with _eval_mode(backbone), feature_cache():
        for name in config.evaluators:
            entry = host.get("evaluator", name)
            evaluator = entry.load()(component_options(entry, config.evaluator_options.get(name, {})))
            started = time.perf_counter()
            with StageProgress(name, console=console) as progress:
                result = evaluator.evaluate(
                    features=feature_functions[getattr(evaluator, "feature_kind", "dense")],
                    train=built.eval_train,
                    val=built.eval_val,
                    dataset_name=(config.eval_dataset or config.dataset).name,
                    device=built.device,
                    progress=progress,
                )
            if result.seconds is None:
                result.seconds = time.perf_counter() - started
            if tracker is not None:
                tracker.log_evaluation(result)
                host.hook.dssl_evaluation_finished(run=info or RunInfo(), result=result)
            results.append(result)
    return results


def evaluate_baselines(built: BuiltRun, host: PluginHost, *, console: Any = None) -> dict[str, list[EvaluationResult]]:
    """Evaluate the run's ``baselines`` with its evaluators: ``start`` and/or ``random``.

    ``start`` is the evaluated network as training found it (the ``--init`` weights); ``random`` is the same
    architecture at random init with the run's seed. When the run itself starts from random init the two are
    the same network, evaluated once and reported as ``start``.
    """
    from dssl.engine.seeding import seed_everything

    config = built.config
    results: dict[str, list[EvaluationResult]] = {}
    for name in config.baselines:
        if name == "random" and built.init == "random":
            if "start" in config.baselines:
                continue
            name = "start"
        if name == "start":
            assert built.start_backbone is not None  # kept by build_run when baselines ask for it
            backbone = built.start_backbone
        else:
            # After training, so re-seeding cannot change the run: the weights a random-init run would start from.
            seed_everything(config.seed)
            fresh = build_backbone(config, host)
            objective_entry = host.get("objective", config.objective.name)
            objective = objective_entry.load()(
                fresh, component_options(objective_entry, config.objective.options), total_steps=config.optim.steps
            )
            backbone = objective.eval_backbone().to(built.device)
        results[name] = evaluate_backbone(built, host, backbone=backbone, console=console)
    return results


def image_feature_method(backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``backbone.image_features`` when the backbone defines one (e.g. STELLAR's sparse-token mean), else
    the final ``[CLS]`` token."""
    method = getattr(backbone, "image_features", None)
    if callable(method):
        return method
    return lambda images: backbone(images).cls
