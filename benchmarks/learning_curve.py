"""Frozen-feature metrics of a run *during* training: is the objective moving dense features, and which way?

Usage::

    python benchmarks/learning_curve.py                                   # the main job, linear_seg every 100 steps
    python benchmarks/learning_curve.py --steps 600 --every 150 --set objective.options.use_bn_in_head=true
    python benchmarks/learning_curve.py --config benchmarks/cpu-track/warm-start.yaml --every 250

Resolves the run exactly as ``dssl bench [--config FILE] --objective OBJ --backbone BB --seed S`` with the
``--set`` overrides (tracking off, checkpoints in a temporary folder), evaluates the objective's
``eval_backbone()`` (DINO: the teacher) with the run's evaluators at step 0 — the random init the run starts
from — and then every ``--every`` steps and at the end, through the Python API (:func:`dssl.api.build`,
:func:`dssl.api.train`, :func:`dssl.api.evaluate_built`: ``dssl bench``'s own steps). It prints one JSON line per
evaluation (step, last logged training loss, metrics) and a markdown table at the end; nothing is appended to
``RESULTS.md``.

The evaluations in the middle do not change the run: the former ``benchmarks/dino-cpu-dense.yaml`` gave the same final
``linear_seg`` (6.04 at step 1000, seed 0) here with four intermediate evaluations and in
``benchmarks/trained_vs_random.py`` with none. A curve's step-N point is still *not* a ``--steps N`` run: the
schedules (cosine LR, teacher momentum) span the whole ``--steps``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="dino")
    parser.add_argument("--backbone", default="vit_t16")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    parser.add_argument("--config", default=None, help="YAML run configuration, as dssl bench --config")
    parser.add_argument("--every", type=int, default=100, help="evaluate every N steps (and at the end)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluators", default="linear_seg", help="comma-separated evaluator names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args()
    if args.every <= 0:
        parser.error("--every must be positive")

    from dssl.api import build, evaluate_built, resolve, train
    from rich.console import Console

    console = Console(stderr=True, quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="dssl-curve-") as tmp:
        sets = [
            *args.set,
            "tracking.enabled=false",
            f"output_dir={tmp}",
            f"evaluators=[{args.evaluators}]",
        ]
        overrides: dict[str, Any] = {"objective": args.objective, "backbone": args.backbone, "seed": args.seed}
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = resolve(args.config, sets=sets, **overrides)
        built = build(config)
        last_loss: dict[str, float | None] = {"loss": None}
        rows: list[dict[str, Any]] = []

        def evaluate(step: int) -> None:
            started = time.perf_counter()
            results = evaluate_built(built, console=console)
            row: dict[str, Any] = {"step": step, "loss": last_loss["loss"]}
            row |= {f"{r.evaluator}/{k}": round(v.value, 2) for r in results for k, v in r.metrics.items()}
            row["eval_s"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)

        def on_metrics(metrics: dict[str, float], step: int) -> None:
            last_loss["loss"] = round(float(metrics["loss"]), 4) if "loss" in metrics else None

        evaluate(0)
        started = time.perf_counter()
        train(built, every=args.every, on_interval=evaluate, on_metrics=on_metrics, console=console)
        if rows[-1]["step"] != config.optim.steps:
            evaluate(config.optim.steps)
        print(f"train + evaluations: {time.perf_counter() - started:.0f} s", flush=True)

    keys = [k for k in rows[-1] if k not in ("step", "loss", "eval_s")]
    print(f"\n{args.objective} on {args.backbone}, seed {args.seed}, sets: {' '.join(args.set) or 'none'}\n")
    print("| step | loss | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for row in rows:
        loss = "—" if row["loss"] is None else f"{row['loss']:.3f}"
        print(f"| {row['step']} | {loss} | " + " | ".join(f"{row.get(k, float('nan')):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
