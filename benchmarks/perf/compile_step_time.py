"""Step time of DINO with ``compile: true`` against eager, on the CPU track's main job.

Usage::

    python benchmarks/perf/compile_step_time.py                       # vit_cpu8, cpu preset (the main job)
    python benchmarks/perf/compile_step_time.py --rounds 2 --steps 2 --no-append \\
        --set augmentation.options.global_size=32 --set augmentation.options.local_size=16   # smoke

The run is configured as ``dssl bench --objective dino --backbone vit_cpu8`` (preset ``cpu``) configures it,
built twice from the same seed: one trainer eager, one with ``compile: true`` (inductor; what is compiled is
described in :mod:`dssl.engine.compilation`). ``--batches`` batches from the run's own loader are held in
memory, so data loading is excluded. Reported:

* **first compiled step**: wall time, and CPU time of this process plus of its children (inductor's gcc runs
  and compile workers), of the compiled trainer's first step, which compiles every graph;
* **steady state**: after ``--warmup`` steps of each, alternating rounds (eager, compiled, ...) of ``--steps``
  steps each; the median time per step over the rounds, wall and CPU;
* **recompiles**: graphs dynamo compiled after the first step (0 means no step recompiled), and its graph
  breaks.

The figures are for a CPU; wall times on a shared machine move with its load (the load average is in the
section). ``--no-append`` keeps benchmarks/RESULTS.md unchanged.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section, median


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build(args: argparse.Namespace, *, compile: bool) -> tuple[Any, Any, list[Any]]:
    """Resolve and build the main job as ``dssl bench`` does; returns (config, trainer, held batches)."""
    from dssl.api import build, resolve
    from dssl.runner import make_trainer, training_batches

    config = resolve(
        objective="dino",
        backbone=args.backbone,
        preset=args.preset,
        sets=[*args.set, f"compile={str(compile).lower()}"],
    )
    built = build(config)
    loader = iter(training_batches(built))
    batches = [next(loader).to(built.device) for _ in range(args.batches)]
    del loader
    return config, make_trainer(built), batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_cpu8")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds of each (alternating)")
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each after the first")
    parser.add_argument("--batches", type=int, default=4, help="batches held in memory and cycled")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    import os

    import torch
    from torch._dynamo.utils import counters

    load_at_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    torch.set_num_threads(args.threads)
    config, eager, batches = build(args, compile=False)
    _, fast, _ = build(args, compile=True)

    def run(trainer: Any, steps: int) -> tuple[float, float]:
        """(wall, CPU) seconds per step of ``steps`` steps from step 0 (the same schedules every round)."""
        trainer.start_step = 0
        trainer.optim = config.optim.model_copy(update={"steps": steps})
        wall, cpu = time.perf_counter(), _cpu_seconds()
        trainer.fit(itertools.cycle(batches))
        return (time.perf_counter() - wall) / steps, (_cpu_seconds() - cpu) / steps

    counters.clear()
    first_wall, first_cpu = run(fast, 1)
    graphs_first = int(counters["stats"]["unique_graphs"])
    print(
        f"# first compiled step: {first_wall:.1f} s wall, {first_cpu:.1f} s CPU, {graphs_first} graphs", file=sys.stderr
    )
    run(eager, 1)
    if args.warmup:
        run(fast, args.warmup)
        run(eager, args.warmup)
    eager_times: list[tuple[float, float]] = []
    fast_times: list[tuple[float, float]] = []
    for index in range(args.rounds):
        eager_times.append(run(eager, args.steps))
        fast_times.append(run(fast, args.steps))
        print(
            f"# round {index + 1}/{args.rounds}: eager {1000 * eager_times[-1][0]:.1f} ms/step, "
            f"compiled {1000 * fast_times[-1][0]:.1f} ms/step",
            file=sys.stderr,
            flush=True,
        )
    recompiled = int(counters["stats"]["unique_graphs"]) - graphs_first
    breaks = sum(counters["graph_break"].values())

    eager_ms, eager_cpu_ms = (1000 * median([t[i] for t in eager_times]) for i in (0, 1))
    fast_ms, fast_cpu_ms = (1000 * median([t[i] for t in fast_times]) for i in (0, 1))
    crops = [tuple(c.shape) for c in batches[0].crops]
    settings = (
        f"DINO on {config.backbone.name}, preset {config.preset}, device cpu, precision {config.precision}, "
        f"batch {config.optim.batch_size}, views {len(crops)} ({batches[0].n_global} global {crops[0][-1]} px, "
        f"{len(crops) - batches[0].n_global} local {crops[-1][-1]} px), out_dim {config.objective.options['out_dim']}; "
        f"{args.batches} held batches; first compiled step, then {args.warmup} warm-up steps each, then "
        f"{args.rounds} alternating rounds (eager, compiled) of {args.steps} steps."
    )
    table = "\n".join(
        [
            "| | eager | compile: true (inductor) |",
            "|---|---|---|",
            f"| first step (compiles {graphs_first} graphs) | - | {first_wall:.1f} s wall, {first_cpu:.1f} s CPU |",
            f"| median ms/step, wall | {eager_ms:.1f} | {fast_ms:.1f} |",
            f"| median ms/step, CPU | {eager_cpu_ms:.1f} | {fast_cpu_ms:.1f} |",
            f"| graphs compiled after the first step (recompiles) | - | {recompiled} |",
            f"| graph breaks | - | {breaks} |",
            "",
            f"compiled / eager step time (wall medians) = **{fast_ms / eager_ms:.2f}**.",
        ]
    )
    print(settings)
    print(table)
    if not args.no_append:
        path = append_section(
            "compile: true on the CPU track's main job",
            details=[
                f"Settings: {settings}",
                "Compiled: the student and teacher block stacks and DINOLoss (dssl.engine.compilation); schedules "
                "and the step stay in eager Python. CPU time includes children (gcc, inductor compile workers). "
                "Shared 2-core VM with other jobs running: wall times move with the load (load average "
                f"{load_at_start} when the script started; the machine line's is read when the section is written).",
            ],
            table=table,
            threads=args.threads,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
