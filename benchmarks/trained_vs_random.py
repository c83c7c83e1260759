"""Does the main job learn? Trained backbone vs the same backbone at random init, same evaluators.

Usage::

    python benchmarks/trained_vs_random.py                       # the README's main job, seed 0
    python benchmarks/trained_vs_random.py --seeds 0 1           # two seeds
    python benchmarks/trained_vs_random.py --steps 50 --set optim.lr=0.01 --no-append
    python benchmarks/trained_vs_random.py --config benchmarks/cpu-track/warm-start.yaml   # 2000 steps from random

The CPU track's targets (warm start, main job and every method against random init, their start and the
supervised ceiling, over 3 seeds) are measured by its successor, ``benchmarks/cpu_track_targets.py``, and the main
job prints its own start and random init; this script remains the plain two-way comparison.

For each seed it runs the main job (``dssl bench --objective dino`` with the preset of this machine)
through the Python API with tracking off and checkpoints in a temporary folder, then builds the same run again
with ``dssl.api.build`` (same seed, ``--init random``, nothing trained: the run's start when it starts from
random init, as ``--config benchmarks/cpu-track/warm-start.yaml`` does) and evaluates ``objective.eval_backbone()`` with
``dssl.api.evaluate_built``, i.e. the same evaluators with the same options. It prints trained vs random
for ``linear_seg`` and ``kmeans_seg`` mIoU and appends a dated section to ``benchmarks/RESULTS.md``
(machine, command, settings, numbers, wall times); ``--no-append`` only prints.

Wall times are of the API call (build + train + checkpoint + evaluate); the CLI adds ~5 s of imports.
On a shared machine they move with the load, so the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from machine import cpu_model  # benchmarks/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = """# Benchmark results

Measured numbers, newest last; each section says on what machine, with which command and settings.
Produced by the scripts in this folder (e.g. `python benchmarks/trained_vs_random.py --seeds 0 1`).
"""
METRICS = (("linear_seg", "miou"), ("kmeans_seg", "miou"))


def metric_values(evaluations: list[Any]) -> dict[str, float]:
    return {f"{e.evaluator}/{name}": value.value for e in evaluations for name, value in e.metrics.items()}


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from dssl.api import build, evaluate_built, resolve, run
    from rich.console import Console

    console = Console(stderr=True, quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="dssl-tvr-") as tmp:
        sets = [*args.set, "tracking.enabled=false", f"output_dir={tmp}"]
        overrides: dict[str, Any] = {"objective": args.objective, "backbone": args.backbone, "seed": seed}
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = resolve(args.config, sets=sets, **overrides)

        load_before = os.getloadavg()
        started = time.perf_counter()
        results = run(config, console=console)
        trained_wall = time.perf_counter() - started
        load_after = os.getloadavg()

        # Same seed and config with --init random and no training: build re-seeds and builds the
        # backbone in the same order, so these are the weights the trained run started from.
        random_config = config.model_copy(deep=True)
        random_config.backbone.init = "random"
        started = time.perf_counter()
        random_evals = evaluate_built(build(random_config), console=console)
        random_wall = time.perf_counter() - started

    return {
        "seed": seed,
        "config": config,
        "trained": metric_values(results.evaluations),
        "random": metric_values(random_evals),
        "train_seconds": results.train.get("seconds", float("nan")),
        "final_loss": results.train.get("loss", float("nan")),
        "eval_seconds": sum(e.seconds or 0.0 for e in results.evaluations),
        "trained_wall": trained_wall,
        "random_wall": random_wall,
        "load": (load_before[0], load_after[0]),
    }


def settings_lines(config: Any) -> list[str]:
    c = config
    o = c.objective.options
    a = c.augmentation.options
    lines = [
        f"preset `{c.preset}`, device `{c.device}`, init `{c.backbone.init}`, evaluators {', '.join(c.evaluators)}",
        f"optim: steps {c.optim.steps}, batch {c.optim.batch_size}, lr {c.optim.lr:g} per 256 "
        f"(peak {c.optim.lr * c.optim.batch_size / 256:.3g}), warmup {c.optim.warmup_steps}, "
        f"wd {c.optim.weight_decay:g}->{c.optim.weight_decay_end:g}, clip {c.optim.clip_grad}",
        "augmentation: "
        + ", ".join(
            f"{k} {a[k]}"
            for k in ("global_size", "local_size", "n_global", "n_local", "global_scale", "local_scale")
            if k in a
        ),
        f"dataset: {c.dataset.name} " + ", ".join(f"{k} {v}" for k, v in c.dataset.options.items()),
    ]
    keys = (
        "out_dim",
        "momentum_teacher",
        "teacher_temp",
        "warmup_teacher_temp",
        "drop_path_rate",
        "freeze_last_layer_steps",
    )
    lines.append("objective: " + ", ".join(f"{k} {o[k]}" for k in keys if k in o))
    lines.append(f"config hash of seed {c.seed}: `{c.fingerprint()}`")
    return lines


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        "| seed | "
        + " | ".join(f"{ev} {m} trained | random | Δ" for ev, m in METRICS)
        + " | final loss | train s | eval s | job wall s | load 1-min (before→after) |"
    )
    sep = "|" + "---|" * (1 + 3 * len(METRICS) + 5)
    out = [head, sep]
    for r in rows:
        cells = [str(r["seed"])]
        for ev, m in METRICS:
            key = f"{ev}/{m}"
            t, z = r["trained"].get(key, float("nan")), r["random"].get(key, float("nan"))
            cells += [f"{t:.2f}", f"{z:.2f}", f"{t - z:+.2f}"]
        cells += [
            f"{r['final_loss']:.3f}",
            f"{r['train_seconds']:.0f}",
            f"{r['eval_seconds']:.0f}",
            f"{r['trained_wall']:.0f}",
            f"{r['load'][0]:.2f}→{r['load'][1]:.2f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="dino")
    parser.add_argument("--backbone", default="vit_t16")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    parser.add_argument("--config", type=Path, default=None, help="YAML run configuration, as dssl bench --config")
    parser.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as dssl bench --set (repeatable)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to append to")
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args()

    import torch

    rows = [run_seed(args, seed) for seed in args.seeds]

    lines = table(rows)
    print("\n".join(lines))
    if args.no_append:
        return
    command = "python benchmarks/trained_vs_random.py " + shlex.join(sys.argv[1:])
    job = f"dssl bench --objective {args.objective} --backbone {args.backbone}"
    if args.config is not None:
        job += f" --config {shlex.quote(str(args.config))}"
    if args.steps is not None:
        job += f" --steps {args.steps}"
    job += "".join(f" --set {shlex.quote(s)}" for s in args.set)
    section = [
        "",
        f"## trained vs random init — {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}",
        f"- command: `{command}`",
        f"- job: `{job}` (tracking off), then the same seed at `--init random`, untrained, same evaluators",
        *[f"- {line}" for line in settings_lines(rows[0]["config"])],
        "",
        *lines,
        "",
        "Δ = trained − random. train s: the training loop; eval s: both evaluators; job wall s: build + "
        "train + checkpoint + evaluate (the CLI adds imports). Timings move with the machine's load.",
    ]
    if not args.results.exists():
        args.results.write_text(HEADER)
    with args.results.open("a") as handle:
        handle.write("\n".join(section) + "\n")
    print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
