"""Train the CPU track's warm start: DINO from random init, with its learning curve; write it for --init warmstart.

Usage::

    python benchmarks/warm_start.py                       # rebuilds harness/dssl/warmstarts/vit_cpu8-dino.pt
    python benchmarks/warm_start.py --seed 1 --output /tmp/warm-s1.pt --no-append

Resolves ``benchmarks/cpu-track/warm-start.yaml`` as ``dssl bench --config`` would (tracking off), evaluates the
random-init backbone with the run's evaluators, trains with ``dssl bench``'s engine and evaluates again every
``--every`` steps and at the end — the learning curve from scratch that the CPU track's post-training runs,
main job and learning tests skip. The trained DINO teacher (backbone, head and centre, in facebookresearch/dino's
layout) goes to ``--output`` with its provenance (configuration, fingerprint, seed, curve, time, machine,
dssl version and git commit) inside the file and in a ``.json`` beside it, whose ``sha256`` names the exact
bytes. Training is deterministic on the CPU for a given seed, thread count and machine; a run elsewhere
reproduces the curve up to floating-point summation order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from perf._report import shown_path  # noqa: E402

DEFAULT_CONFIG = ROOT / "benchmarks" / "cpu-track" / "warm-start.yaml"
DEFAULT_OUTPUT = ROOT / "harness" / "dssl" / "warmstarts" / "vit_cpu8-dino.pt"


def git_commit(config: Path) -> str:
    """The repository's HEAD commit, or ``unknown``.

    ``+dirty`` is added when the code, the registry or the run's configuration file differ from that commit (a
    changed configuration alone changes the checkpoint).
    """
    paths = ["harness", "plugins", "registry.yaml"]
    if config.resolve().is_relative_to(ROOT):
        paths.append(str(config.resolve().relative_to(ROOT)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML run configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=500, help="evaluate every N steps (and at the end)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the warm start is written")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    parser.add_argument("--no-append", action="store_true", help="do not append the curve to benchmarks/RESULTS.md")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dssl import __version__
    from dssl.api import build, evaluate_built, resolve, train
    from rich.console import Console

    console = Console(stderr=True)
    config = resolve(args.config, sets=[*args.set, "tracking.enabled=false"], seed=args.seed)
    if config.objective.name != "dino":
        parser.error(f"the warm start is a DINO run; {args.config} trains {config.objective.name}")
    built = build(config)
    curve: list[dict[str, Any]] = []
    last_loss: dict[str, float] = {}
    started = time.perf_counter()

    def evaluate(step: int) -> None:
        results = evaluate_built(built, console=Console(quiet=True))
        row: dict[str, Any] = {
            "step": step,
            "loss": last_loss.get("loss"),
            "wall_s": round(time.perf_counter() - started),
        }
        row |= {f"{r.evaluator}/{k}": round(v.value, 2) for r in results for k, v in r.metrics.items()}
        curve.append(row)
        console.print(json.dumps(row))

    def remember(metrics: Any, step: int) -> None:
        last_loss["loss"] = round(float(metrics["loss"]), 4)

    evaluate(0)
    summary = train(built, every=args.every, on_interval=evaluate, on_metrics=remember, console=console)
    evaluate(config.optim.steps)

    provenance = {
        "recipe": f"python benchmarks/warm_start.py --config {shown_path(args.config)} --seed {args.seed}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "".join(f" --set {s}" for s in args.set),
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "seed": args.seed,
        "steps": config.optim.steps,
        "train_seconds": round(summary.seconds),
        "images_per_second": round(summary.images_per_second, 1),
        "learning_curve": curve,
        "dssl_version": __version__,
        "git_commit": git_commit(args.config),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{os.cpu_count()} CPUs, {_cpu_model()}",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    checkpoint = built.objective.full_checkpoint() | {"meta": provenance}
    # Written next to its destination and renamed, so that an interrupted run never leaves half a checkpoint.
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, args.output)
    provenance["sha256"] = hashlib.sha256(args.output.read_bytes()).hexdigest()
    sidecar = args.output.with_suffix(".json")
    sidecar.write_text(json.dumps({k: v for k, v in provenance.items() if k != "config"}, indent=2) + "\n")
    console.print(
        f"warm start written to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB), provenance {sidecar}"
    )

    if not args.no_append:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from perf._report import append_section

        keys = [k for k in curve[-1] if k not in ("step", "loss", "wall_s")]
        lines = ["| step | loss | " + " | ".join(keys) + " | wall s |", "|---|---|" + "---|" * (len(keys) + 1)]
        for row in curve:
            loss = "—" if row["loss"] is None else f"{row['loss']:.3f}"
            lines.append(
                f"| {row['step']} | {loss} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + f" | {row['wall_s']} |"
            )
        append_section(
            "CPU track warm start: DINO from random init",
            details=[
                f"Configuration `{args.config.name}` (fingerprint `{provenance['fingerprint']}`), seed {args.seed}, "
                f"{config.optim.steps} steps of {config.optim.batch_size} images, {summary.seconds / 60:.0f} min of "
                f"training at {summary.images_per_second:.0f} images/s; evaluated with "
                f"{', '.join(config.evaluators)} on {(config.eval_dataset or config.dataset).name}.",
                f"Written to `{shown_path(args.output)}` "
                f"(sha256 `{provenance['sha256'][:16]}…`, git {provenance['git_commit'][:12]}).",
            ],
            table="\n".join(lines),
        )


def _cpu_model() -> str:
    from machine import cpu_model  # benchmarks/ is on sys.path (top of this file)

    return cpu_model()


if __name__ == "__main__":
    main()
