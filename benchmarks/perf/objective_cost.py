"""Training-step time and peak memory of every installed objective, relative to DINO.

Usage::

    python benchmarks/perf/objective_cost.py                          # CPU, vit_t16, each objective's cpu preset
    python benchmarks/perf/objective_cost.py --device cuda            # GPU (peak = torch.cuda.max_memory_allocated)
    python benchmarks/perf/objective_cost.py --steps 1 --warmup 1 --no-append \\
        --set augmentation.options.global_size=32 --set augmentation.options.local_size=16   # smoke

Objectives: ``dino``, ``cotap``, ``cotap`` with ``objective.options.filter=oaf``, ``paka``, ``udi`` and
``stellar`` (those not installed are listed as such). Each runs in a fresh subprocess, configured as
``dssl bench --objective NAME --backbone vit_t16`` configures it with the preset (``cpu`` by default, so each
objective gets its own block of that preset): :func:`dssl.api.resolve` then :func:`dssl.api.build`.
``--batches`` batches are drawn from the run's loader and held in memory; then the engine
(:func:`dssl.runner.make_trainer`) trains ``--warmup`` untimed steps and ``--steps`` timed ones over them
(data loading excluded). Time = median ms/step over ``--repeats`` timed blocks.

Memory on the CPU: the subprocess's peak resident set size (``ru_maxrss``: imports, model, optimiser state,
held batches and training; tracemalloc does not see torch's allocations), and the training part of it
(peak minus the resident size just before the first step). Workers run with ``MALLOC_MMAP_THRESHOLD_=65536``
so that freed tensors go back to the OS (as benchmarks/perf/cotap_memory.py). On CUDA:
``torch.cuda.max_memory_allocated`` over the training steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section, median

#: (label, objective, extra --set overrides)
OBJECTIVES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dino", "dino", ()),
    ("cotap", "cotap", ()),
    ("cotap+oaf", "cotap", ("objective.options.filter=oaf",)),
    ("paka", "paka", ()),
    ("udi", "udi", ()),
    ("stellar", "stellar", ()),
)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one objective's run, train it over held batches and measure time and peak memory."""
    import itertools

    import torch
    from dssl.api import build, list_components, resolve
    from dssl.runner import make_trainer, training_batches

    torch.set_num_threads(spec["threads"])
    if spec["objective"] not in {e.name for e in list_components("objective")}:
        return {"status": "not installed"}
    overrides: dict[str, Any] = {"objective": spec["objective"], "backbone": spec["backbone"]}
    overrides |= {"device": spec["device"], "preset": spec["preset"]}
    try:
        config = resolve(sets=[*spec["sets"], *spec["extra"]], **overrides)
        built = build(config)
    except Exception as exc:  # a missing optional plugin (oaf) or a config the preset does not cover
        return {"status": f"not built: {type(exc).__name__}: {str(exc)[:160]}"}
    device = built.device
    loader = iter(training_batches(built))
    batches = [next(loader).to(device) for _ in range(spec["batches"])]
    del loader
    trainer = make_trainer(built)

    def block(steps: int) -> float:
        trainer.start_step = 0
        trainer.optim = config.optim.model_copy(update={"steps": steps})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        trainer.fit(itertools.cycle(batches))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / steps

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes()
    block(spec["warmup"])
    times = [block(spec["steps"]) for _ in range(spec["repeats"])]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        peak_total = peak
    else:
        peak_total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = peak_total
    crops = batches[0].crops
    return {
        "status": "ok",
        "ms_per_step": 1000 * median(times),
        "peak_mb": peak_total / 2**20,
        "train_peak_mb": (peak - base) / 2**20,
        "batch": config.optim.batch_size,
        "views": f"{len(crops)} ({crops[0].shape[-1]}/{crops[-1].shape[-1]} px)",
        "augmentation": config.augmentation.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backbone", default="vit_t16")
    parser.add_argument("--preset", help="default: cpu on cpu, gpu on cuda")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batches", type=int, default=2, help="batches held in memory and cycled")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--only", nargs="+", metavar="LABEL", help="subset of: " + " ".join(o[0] for o in OBJECTIVES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    preset = args.preset or ("gpu" if args.device == "cuda" else "cpu")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    rows: list[tuple[str, dict[str, Any]]] = []
    for label, objective, extra in OBJECTIVES:
        if args.only and label not in args.only:
            continue
        spec = {
            "objective": objective,
            "extra": list(extra),
            "sets": args.set,
            "backbone": args.backbone,
            "device": args.device,
            "preset": preset,
            "threads": args.threads,
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "batches": args.batches,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            record = {"status": f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}
        else:
            record = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((label, record))
        print(f"# {label}: {record}", file=sys.stderr, flush=True)

    reference = next((r for label, r in rows if label == "dino" and r["status"] == "ok"), None)
    memory = "peak allocated MB (cuda)" if args.device == "cuda" else "peak RSS MB (process)"
    lines = [
        f"| objective | batch | views | ms/step | × DINO time | {memory} | training peak MB | × DINO training peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        if r["status"] != "ok":
            lines.append(f"| {label} | | | {r['status']} | | | | |")
            continue
        time_ratio = f"{r['ms_per_step'] / reference['ms_per_step']:.2f}" if reference else "n/a"
        mem_ratio = f"{r['train_peak_mb'] / reference['train_peak_mb']:.2f}" if reference else "n/a"
        lines.append(
            f"| {label} | {r['batch']} | {r['views']} | {r['ms_per_step']:.1f} | {time_ratio} | {r['peak_mb']:.0f} | "
            f"{r['train_peak_mb']:.0f} | {mem_ratio} |"
        )
    table = "\n".join(lines)
    settings = (
        f"backbone {args.backbone}, preset {preset} (each objective's own block), device {args.device}; "
        f"{args.batches} held batches, {args.warmup} warm-up steps, median of {args.repeats} blocks of "
        f"{args.steps} steps; overrides {args.set or 'none'}."
    )
    print(settings)
    print(table)
    if not args.no_append:
        path = append_section(
            "Objective cost relative to DINO",
            details=[
                f"Settings: {settings} One fresh subprocess per objective (MALLOC_MMAP_THRESHOLD_=65536); "
                "training peak = peak minus the memory in use just before the first step.",
            ],
            table=table,
            threads=args.threads,
            device=args.device,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
