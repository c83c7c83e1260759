"""What a run's backbone reaches with labels in the same number of steps: a ceiling for short SSL runs.

Usage::

    python benchmarks/supervised_ceiling.py                         # the main job's run, seeds 0
    python benchmarks/supervised_ceiling.py --seeds 0 1 2 --steps 1000
    python benchmarks/supervised_ceiling.py --config benchmarks/cpu-track/dino.yaml --set optim.lr=0.004
    python benchmarks/supervised_ceiling.py --steps 6000 --seeds 0 1 2 --set backbone.init=random \
        --set "evaluators=[linear_seg]" --set "baselines=[]" --output ceilings.jsonl   # for cpu_track_targets.py

Resolves the run exactly as ``dssl bench [--config FILE] --objective OBJ --backbone BB --seed S`` would (the
preset of this machine, ``--set`` overrides), builds its backbone from the same start (``backbone.init``:
random init or a checkpoint) and its training dataset, and trains the backbone *with the dense masks as labels*:
a 1x1 convolution on the patch tokens, logits bilinearly upsampled to the mask, pixel-wise cross-entropy,
AdamW at ``--lr`` with the run's batch size and number of steps, on the training images resized to the
run's global-crop side (no other augmentation). Then it scores the run's evaluators on the result, exactly as
``dssl bench`` scores a trained run. Nothing here is self-supervised: it measures how far the backbone and
the probes *can* move in that many steps when the signal is the label itself, which bounds what a
self-supervised objective can show at the same budget (``benchmarks/trained_vs_random.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def train_supervised(built: Any, *, lr: float, seed: int, log_every: int = 100) -> float:
    """Train ``built``'s backbone on its dataset's masks for the run's steps; returns the seconds taken."""
    import torch
    import torch.nn.functional as F
    from dssl.plugin import normalize

    config = built.config
    backbone = built.objective.backbone  # the student: an EMA teacher's weights take no gradient
    train = built.train_set
    size = int(config.augmentation.options.get("global_size", train[0]["image"].shape[-1]))
    head = torch.nn.Conv2d(backbone.embed_dim, train.num_classes, kernel_size=1)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr, weight_decay=0.04)
    generator = torch.Generator().manual_seed(seed)
    backbone.train()
    started = time.perf_counter()
    for step in range(1, config.optim.steps + 1):
        picks = torch.randint(0, len(train), (config.optim.batch_size,), generator=generator).tolist()
        items = [train[i] for i in picks]
        images = torch.stack([it["image"] for it in items])
        masks = torch.stack([it["mask"] for it in items])
        if size != images.shape[-1]:
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
            masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
        tokens = backbone.features(normalize(images)).permute(0, 3, 1, 2)
        logits = F.interpolate(head(tokens), size=masks.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks, ignore_index=train.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == config.optim.steps:
            print(f"  step {step}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    backbone.eval()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="dino", help="whose run configuration (backbone, data, steps) to use")
    parser.add_argument("--backbone", default=None, help="default: the configuration's")
    parser.add_argument("--config", type=Path, default=None, help="YAML run configuration, as dssl bench --config")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the run's)")
    parser.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate of the supervised training")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeat)")
    parser.add_argument("--output", type=Path, default=None, help="append each seed's row here (JSON lines)")
    args = parser.parse_args()

    from dssl.api import build, evaluate_built, resolve

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        overrides: dict[str, Any] = {"objective": args.objective, "seed": seed}
        if args.backbone is not None:
            overrides["backbone"] = args.backbone
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = resolve(args.config, sets=[*args.set, "tracking.enabled=false"], **overrides)
        built = build(config)
        print(
            f"seed {seed}: {config.backbone.name} from {config.backbone.init}, {config.optim.steps} steps", flush=True
        )
        start = evaluate_built(built)
        seconds = train_supervised(built, lr=args.lr, seed=seed)
        trained = evaluate_built(built, backbone=built.objective.backbone)
        row = {"seed": seed, "steps": config.optim.steps, "train_s": round(seconds, 1)}
        for label, results in (("start", start), ("supervised", trained)):
            row |= {f"{label}/{r.evaluator}/{k}": round(v.value, 2) for r in results for k, v in r.metrics.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.output is not None:
            with args.output.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    keys = sorted(k.split("/", 1)[1] for k in rows[0] if k.startswith("supervised/"))
    print(f"\nsupervised ceiling over seeds {args.seeds} ({rows[0]['steps']} steps, lr {args.lr:g})")
    for key in keys:
        values = {label: [row[f"{label}/{key}"] for row in rows] for label in ("start", "supervised")}
        shown = {
            label: f"{statistics.fmean(v):.2f}" + (f" ± {statistics.stdev(v):.2f}" if len(v) > 1 else "")
            for label, v in values.items()
        }
        print(f"  {key}: start {shown['start']} -> supervised {shown['supervised']}")


if __name__ == "__main__":
    main()
