"""Does a method learn? A short, deterministic run on the CPU track with the checks a learning test asserts.

Unit and conformance tests prove that a method's code runs and matches its formulas; they cannot see a
method that runs and learns nothing (a loss term stuck at exactly 0, a filter collapsed to a constant,
gradients that never reach the backbone). :func:`learning_run` trains a method the way ``dssl bench`` does,
from the CPU track's start (the ``cpu`` preset: ``vit_cpu8`` from its warm start), records each of the
objective's :attr:`~dssl.objectives.base.Objective.loss_terms` at every step, checks that the loss still
reaches the backbone at the end, and probes the frozen dense features before and after with a quick linear
segmentation probe: the evaluated backbone (DINO: the EMA teacher) and the trained student backbone. The
student is where a short run's learning shows: an EMA teacher moves only a few percent of the way in 40 steps
(measured, RESULTS.md "learning margins"). The first-party learning tests (``tests/learning``) assert on its
report with margins measured over several seeds (``benchmarks/cpu-track/learning_margins.py``); a plugin
author can do the same. They start from the former warm start (``--set
backbone.init=warmstart:vit_cpu8-dino-plateau``, with the former lr 0.002 and EMA momentum 0.996): on the
committed warm start, further along DINO's curve, students first fall for some 40 steps when training restarts.

Example:
    >>> report = learning_run("dino", steps=40)                                      # doctest: +SKIP
    >>> report.dead_terms(), report.backbone_grad_norm > 0, report.student_gain > 0.05  # doctest: +SKIP
    ([], True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NEGLIGIBLE_LOSS", "QUICK_PROBE", "LearningReport", "learning_run"]

#: A loss term never larger than this (in magnitude) over a run is dead. The first-party terms are 1 - AP, CKA
#: distances, cross-entropies and MSEs of order 0.01-10 while they learn (RESULTS.md, "learning margins").
NEGLIGIBLE_LOSS = 1e-4

#: The quick dense probe: the linear segmentation probe on 256 / 128 images of the track's evaluation data.
QUICK_PROBE: tuple[str, ...] = (
    "evaluators=[linear_seg]",
    "eval_dataset.options.num_train=256",
    "eval_dataset.options.num_val=128",
    "evaluator_options.linear_seg.epochs=10",
)


@dataclass
class LearningReport:
    """What :func:`learning_run` saw.

    Attributes:
        method: The objective's leaderboard label (``cotap+oaf`` for CoTAP with OAF).
        steps: Optimisation steps trained.
        terms: Each loss term's value at every step, in order.
        backbone_grad_norm: Norm of the loss's gradient over the student backbone's parameters, on a fresh
            batch after training.
        start: Probe metrics (``linear_seg/miou``, ``linear_seg/pixel_accuracy``) of the evaluated backbone the
            run started from.
        trained: The same probe on the evaluated backbone after training.
        student_start: The same probe on the student backbone (``objective.backbone``, the network the optimiser
            updates) before training.
        student_trained: The same probe on the student backbone after training.
    """

    method: str
    steps: int
    terms: dict[str, list[float]] = field(default_factory=dict)
    backbone_grad_norm: float = 0.0
    start: dict[str, float] = field(default_factory=dict)
    trained: dict[str, float] = field(default_factory=dict)
    student_start: dict[str, float] = field(default_factory=dict)
    student_trained: dict[str, float] = field(default_factory=dict)

    @property
    def gain(self) -> float:
        """Probe mIoU of the evaluated backbone after training minus before (points)."""
        return self.trained["linear_seg/miou"] - self.start["linear_seg/miou"]

    @property
    def student_gain(self) -> float:
        """Probe mIoU of the student backbone after training minus before (points)."""
        return self.student_trained["linear_seg/miou"] - self.student_start["linear_seg/miou"]

    def dead_terms(self, *, atol: float = NEGLIGIBLE_LOSS) -> list[str]:
        """Terms that are not finite at some step, negligible throughout (never above ``atol`` in magnitude:
        a collapsed loss sits at 0 up to float rounding, as CoTAP + OAF's tied targets held the ranking term at
        3.4e-6), or constant over the whole run."""
        dead = []
        for name, values in self.terms.items():
            finite = all(math.isfinite(v) for v in values)
            if not values or not finite or max(abs(v) for v in values) <= atol or len(set(values)) == 1:
                dead.append(name)
        return dead

    def summary(self) -> str:
        """One line: method, steps, start → trained mIoU and gain (evaluated backbone, then student), the terms,
        dead terms, gradient norm."""
        return (
            f"{self.method}: {self.steps} steps, linear_seg mIoU {self.start['linear_seg/miou']:.2f} -> "
            f"{self.trained['linear_seg/miou']:.2f} ({self.gain:+.2f}), student "
            f"{self.student_start['linear_seg/miou']:.2f} -> {self.student_trained['linear_seg/miou']:.2f} "
            f"({self.student_gain:+.2f}), terms "
            + ", ".join(f"{k} {v[0]:.4g}->{v[-1]:.4g}" for k, v in self.terms.items())
            + f", dead {self.dead_terms() or 'none'}, backbone grad norm {self.backbone_grad_norm:.3g}"
        )


def learning_run(
    objective: str,
    *,
    steps: int,
    sets: Sequence[str] = (),
    seed: int = 0,
    probe: Sequence[str] = QUICK_PROBE,
    host: Any = None,
) -> LearningReport:
    """Train ``objective`` on the CPU track for ``steps`` steps and report what it learned.

    The configuration is ``dssl bench``'s with the ``cpu`` preset (the method's own block included), then
    ``sets``, then the probe's settings; tracking is off and nothing is written.

    Args:
        objective: A registered objective.
        steps: Optimisation steps (the schedules span them).
        sets: ``--set`` overrides (e.g. ``objective.options.filter=oaf``).
        seed: Run seed (data order, augmentations, new heads).
        probe: ``--set`` lines choosing the probe (default :data:`QUICK_PROBE`).
        host: Plugin host; default the process-wide one.

    Returns:
        The :class:`LearningReport`.
    """
    import torch
    from rich.console import Console

    from dssl.api import build, evaluate_built, resolve, train
    from dssl.runner import training_batches

    quiet = Console(quiet=True)
    config = resolve(
        host=host,
        objective=objective,
        preset="cpu",
        seed=seed,
        steps=steps,
        sets=[*sets, *probe, "tracking.enabled=false", "log_every=1", "baselines=[start]"],
    )
    built = build(config, host=host)
    method = getattr(built.objective, "method_label", "") or objective
    report = LearningReport(method=method, steps=steps)
    assert built.start_backbone is not None  # kept because baselines ask for the start
    report.start = _probe(evaluate_built(built, backbone=built.start_backbone, host=host, console=quiet))
    student = built.objective.backbone
    if _same_weights(student, built.start_backbone):  # DINO-like: the teacher starts as a copy of the student
        report.student_start = dict(report.start)
    else:
        report.student_start = _probe(evaluate_built(built, backbone=student, host=host, console=quiet))
    names = tuple(built.objective.loss_terms)
    report.terms = {name: [] for name in names}

    def record(metrics: Any, step: int) -> None:
        for name in names:
            report.terms[name].append(float(metrics[name]))

    train(built, on_metrics=record, console=quiet)
    report.trained = _probe(evaluate_built(built, host=host, console=quiet))
    report.student_trained = _probe(evaluate_built(built, backbone=student, host=host, console=quiet))

    objective_module = built.objective
    objective_module.train()
    objective_module.zero_grad(set_to_none=True)
    batch = next(iter(training_batches(built, start_step=steps))).to(built.device)
    objective_module(batch, step=steps - 1)["loss"].backward()
    grads = [p.grad.detach().flatten() for p in objective_module.backbone.parameters() if p.grad is not None]
    report.backbone_grad_norm = float(torch.linalg.vector_norm(torch.cat(grads))) if grads else 0.0
    objective_module.zero_grad(set_to_none=True)
    return report


def _same_weights(a: Any, b: Any) -> bool:
    import torch

    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _probe(results: Sequence[Any]) -> dict[str, float]:
    return {f"{r.evaluator}/{name}": value.value for r in results for name, value in r.metrics.items()}
