"""Overhead of the dssl training engine over a bare PyTorch loop, for the same DINO step.

Usage::

    python benchmarks/perf/harness_overhead.py                        # CPU, vit_t16, cpu preset
    python benchmarks/perf/harness_overhead.py --device cuda          # GPU, vit_s16, gpu preset
    python benchmarks/perf/harness_overhead.py --rounds 3 --steps 2 --warmup 1 --no-append \\
        --set augmentation.options.global_size=32 --set augmentation.options.local_size=16   # smoke

The run is configured exactly as ``dssl bench --objective dino --backbone vit_t16`` configures it with the
``cpu`` preset (``vit_s16`` and the ``gpu`` preset with ``--device cuda``): :func:`dssl.api.resolve` then
:func:`dssl.api.build`. ``--batches`` batches are drawn from the run's own training loader before
anything is timed and held in memory (on the device), so data loading is excluded from both sides:

* **engine**: the engine's trainer (:func:`dssl.runner.make_trainer`) ``.fit`` over the held batches
  (schedules, autocast, non-finite guard, gradient clipping, metric windows and log intervals as in a real
  run; no progress display, no MLflow, no checkpoints);
* **bare**: a loop written here for the same objective module: ``zero_grad``, forward (the objective's
  forward incl. its loss, under the same autocast), ``backward``, DINO per-parameter clipping with fused
  ``torch._foreach`` ops, ``before_optimizer_step``, AdamW ``step`` (fused on CUDA, like the engine's) and
  ``after_step`` (the EMA teacher update); constant learning rate and weight decay, no logging.

Both train the same objective (each with its own AdamW state). After ``--warmup`` steps of each, the two
run in alternating rounds (engine, bare, engine, bare, ...) of ``--steps`` steps; a round's time per step is
its wall time divided by its steps (the device is synchronised at the round's ends on CUDA). Reported: the
median time per step of each over the rounds, and engine / bare (goal: <= 1.03). ``--no-append`` keeps
benchmarks/RESULTS.md unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section, median

GOAL = 1.03


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_clip(parameters: list[Any], max_norm: float) -> None:
    """DINO's per-parameter clipping (``clip_coef = max_norm / (norm + 1e-6)``, capped at 1) with foreach ops."""
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads))
    torch._foreach_mul_(grads, list(torch.clamp(max_norm / (norms + 1e-6), max=1.0).unbind(0)))


class BareLoop:
    """The bare PyTorch training loop over held batches (see the module docstring).

    Args:
        objective: The DINO objective (already on the device).
        optim: The run's ``optim`` configuration (peak lr, weight decay, clip).
        device: The training device.
        amp_dtype: The engine's autocast dtype (``None``: float32), so that both loops compute alike.
    """

    def __init__(self, objective: Any, optim: Any, device: Any, amp_dtype: Any) -> None:
        import torch

        self.objective = objective
        self.device = device
        self.clip = optim.clip_grad
        self.amp = amp_dtype
        lr = optim.lr * optim.batch_size / 256.0
        groups = []
        for group in objective.param_groups():
            group = dict(group)
            group["lr"] = lr * group.pop("lr_scale", 1.0)
            group["weight_decay"] = optim.weight_decay * group.pop("weight_decay_scale", 1.0)
            groups.append(group)
        kwargs = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(groups, **kwargs)
        self.parameters = [p for p in objective.parameters() if p.requires_grad]

    def run(self, batches: list[Any], steps: int) -> None:
        """Train ``steps`` steps, cycling over ``batches``."""
        import torch

        objective, optimizer = self.objective, self.optimizer
        autocast = (lambda: torch.autocast(self.device.type, dtype=self.amp)) if self.amp else contextlib.nullcontext
        for step in range(steps):
            batch = batches[step % len(batches)]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = objective(batch, step=step)["loss"]
            loss.backward()
            if self.clip is not None:
                bare_clip(self.parameters, self.clip)
            objective.before_optimizer_step(step=step)
            optimizer.step()
            objective.after_step(step=step)


def build(args: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """Resolve and build the run as ``dssl bench`` does; returns (config, built run, held batches)."""
    from dssl.api import build, resolve
    from dssl.runner import training_batches

    overrides: dict[str, Any] = {"objective": "dino", "backbone": args.backbone, "device": args.device}
    overrides["preset"] = args.preset
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = resolve(sets=args.set, **overrides)
    built = build(config)
    loader = iter(training_batches(built))
    batches = [next(loader).to(built.device) for _ in range(args.batches)]
    del loader
    return config, built, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backbone", help="default: vit_t16 on cpu, vit_s16 on cuda")
    parser.add_argument("--preset", help="default: cpu on cpu, gpu on cuda")
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of each (alternating)")
    parser.add_argument("--steps", type=int, help="steps per round (default: the config's log_every)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each before the rounds")
    parser.add_argument("--batches", type=int, default=4, help="batches held in memory and cycled")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    args.backbone = args.backbone or ("vit_s16" if args.device == "cuda" else "vit_t16")
    args.preset = args.preset or ("gpu" if args.device == "cuda" else "cpu")

    import torch
    from dssl.runner import make_trainer

    torch.set_num_threads(args.threads)
    config, built, batches = build(args)
    # A round of log_every steps logs once at its end, as often as a real run does.
    args.steps = args.steps or config.log_every
    device = built.device
    trainer = make_trainer(built)
    bare = BareLoop(built.objective, config.optim, device, trainer.amp_dtype)

    def engine_round(steps: int) -> float:
        trainer.start_step = 0
        trainer.optim = config.optim.model_copy(update={"steps": steps})
        _sync(device)
        start = time.perf_counter()
        trainer.fit(itertools.cycle(batches))
        _sync(device)
        return (time.perf_counter() - start) / steps

    def bare_round(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        bare.run(batches, steps)
        _sync(device)
        return (time.perf_counter() - start) / steps

    engine_round(args.warmup)
    bare_round(args.warmup)
    engine_times: list[float] = []
    bare_times: list[float] = []
    for index in range(args.rounds):
        engine_times.append(engine_round(args.steps))
        bare_times.append(bare_round(args.steps))
        print(
            f"# round {index + 1}/{args.rounds}: engine {1000 * engine_times[-1]:.1f} ms/step, "
            f"bare {1000 * bare_times[-1]:.1f} ms/step",
            file=sys.stderr,
            flush=True,
        )

    engine_ms, bare_ms = 1000 * median(engine_times), 1000 * median(bare_times)
    ratio = engine_ms / bare_ms
    pair_ratio = median([e / b for e, b in zip(engine_times, bare_times, strict=True)])
    crops = [tuple(c.shape) for c in batches[0].crops]
    settings = (
        f"DINO on {config.backbone.name}, preset {config.preset}, device {device}, precision {config.precision}, "
        f"batch {config.optim.batch_size}, views {len(crops)} ({batches[0].n_global} global "
        f"{crops[0][-1]} px, {len(crops) - batches[0].n_global} local {crops[-1][-1]} px), "
        f"out_dim {built.objective.options.out_dim}, clip {config.optim.clip_grad}, log_every {config.log_every}; "
        f"{args.batches} held batches; warm-up {args.warmup} steps each, then {args.rounds} alternating rounds "
        f"(engine, bare, ...) of {args.steps} steps."
    )
    verdict = "meets" if ratio <= GOAL else "misses"
    table = "\n".join(
        [
            "| loop | median ms/step | min ms/step | max ms/step |",
            "|---|---|---|---|",
            f"| engine (Trainer.fit) | {engine_ms:.2f} | {1000 * min(engine_times):.2f} | "
            f"{1000 * max(engine_times):.2f} |",
            f"| bare PyTorch loop | {bare_ms:.2f} | {1000 * min(bare_times):.2f} | {1000 * max(bare_times):.2f} |",
            "",
            f"engine / bare = **{ratio:.3f}** (ratio of medians; median of per-round ratios {pair_ratio:.3f}); "
            f"goal <= {GOAL}: {verdict}.",
        ]
    )
    print(settings)
    print(table)
    if not args.no_append:
        path = append_section(
            "Engine overhead vs a bare PyTorch loop",
            details=[
                f"Settings: {settings}",
                "Bare loop: zero_grad, objective forward + loss, backward, per-parameter clip (foreach), "
                "before_optimizer_step, AdamW step, after_step (EMA); constant lr/wd, no logging. Data loading "
                "excluded from both (held batches).",
            ],
            table=table,
            threads=args.threads,
            device=args.device,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
