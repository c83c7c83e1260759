"""Throughput of the embedded procedural dataset on one CPU core.

Usage::

    PYTHONPATH=harness python benchmarks/perf/embedded_throughput.py [--images 500] [--sizes 64 96 128 224]

Prints images per second of ``render`` (numpy core) and ``__getitem__`` (plus tensor conversion and
image labels) for each size. Single-process and single-threaded, so it is the per-core rate a
DataLoader worker gets.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from dssl.api import get_component


def images_per_second(fn: Callable[[int], object], count: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` rate of calling ``fn(i)`` for ``i`` in ``range(count)``."""
    fn(0)  # warm caches (pixel-centre grids, lazy imports) outside the timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images per timed pass")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 224])
    args = parser.parse_args()

    torch.set_num_threads(1)
    print(f"{'size':>6} {'render img/s':>14} {'getitem img/s':>15} {'getitem ms/img':>16}")
    entry = get_component("dataset", "embedded")
    for size in args.sizes:
        ds = entry.load()(entry.options_model()(size=size, num_train=args.images), split="train", data_root=None)
        render = images_per_second(ds.render, args.images)
        getitem = images_per_second(ds.__getitem__, args.images)
        print(f"{size:>6} {render:>14.0f} {getitem:>15.0f} {1000 / getitem:>16.2f}")


if __name__ == "__main__":
    main()
