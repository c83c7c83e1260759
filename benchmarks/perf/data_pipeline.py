"""Does the data pipeline keep the model fed? Per-process view generation rate and the step's data wait.

Usage::

    python benchmarks/perf/data_pipeline.py                       # main job config, workers 0 1 2
    python benchmarks/perf/data_pipeline.py --workers 0 1 --steps 10 --no-append

Two measurements on the configuration of ``dssl bench --objective dino --backbone vit_t16`` (this
machine's preset):

1. **generation per worker process**: images per second of one process producing training samples
   as a DataLoader worker does (an item of the built run's training set, then its augmentation: embedded
   rendering + multi-crop with geometry), single-threaded;
2. **data wait in training**: ``dssl bench --profile-steps`` (:func:`dssl.api.profile`) with
   ``optim.num_workers`` = each of ``--workers``: milliseconds per step spent waiting for the next batch
   against the whole step. With workers the loader is fed when the data share is near zero; with 0
   workers the data share is the generation cost paid inside the step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_section


def generation_rate(config: object, images: int) -> float:
    """Training samples per second of one process (a dataset item, then its views), best of 3 passes."""
    import torch
    from dssl.api import build

    torch.set_num_threads(1)
    built = build(config)  # type: ignore[arg-type]
    dataset, augmentation = built.train_set, built.augmentation

    def sample(draw: int) -> object:
        image = dataset[draw % len(dataset)]["image"]
        return augmentation(image, generator=torch.Generator().manual_seed(draw))

    sample(0)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for draw in range(images):
            sample(draw)
        best = min(best, time.perf_counter() - start)
    return images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps per worker count")
    parser.add_argument("--images", type=int, default=256, help="samples per generation pass")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    from dssl.api import profile, resolve
    from rich.console import Console

    base = resolve(objective="dino", backbone="vit_t16", sets=[*args.set, "tracking.enabled=false"])
    rate = generation_rate(base, args.images)
    lines = [
        f"Generation (embedded {base.dataset.options.get('size', 96)} px + multi-crop "
        f"{base.augmentation.options.get('n_global', 2)}x{base.augmentation.options.get('global_size')} + "
        f"{base.augmentation.options.get('n_local')}x{base.augmentation.options.get('local_size')} px with "
        f"geometry), one process, one thread: **{rate:.0f} samples/s**.",
        "",
        "| loader workers | step ms | data wait ms | data share | training images/s |",
        "|---|---|---|---|---|",
    ]
    quiet = Console(quiet=True)
    for workers in args.workers:
        config = base.model_copy(deep=True)
        config.optim.num_workers = workers
        report = profile(config, steps=args.steps, console=quiet)
        per_step = report.ms_per_step()
        total = sum(per_step.values())
        data = per_step.get("data", 0.0)
        images = config.optim.batch_size * 1000.0 / total
        lines.append(f"| {workers} | {total:.0f} | {data:.1f} | {100 * data / total:.1f} % | {images:.1f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        path = append_section(
            "Data pipeline",
            details=[
                f"Configuration: the main job's (`{base.preset}` preset, batch {base.optim.batch_size}); "
                f"{args.steps} profiled steps after 2 warm-up steps per worker count (`dssl bench --profile-steps`).",
            ],
            table=table,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
