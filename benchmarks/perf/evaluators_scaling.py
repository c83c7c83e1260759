"""Time and peak memory of every built-in evaluator as the number of images grows.

Usage::

    PYTHONPATH=harness python benchmarks/perf/evaluators_scaling.py [--sizes 64 128 256] [--append]

For each size ``N`` and each evaluator, a fresh subprocess pre-renders ``N`` train and ``N`` val embedded
images (96 px, outside the timing), builds a frozen *synthetic* feature function (a random 16x16
patch-embedding convolution to 192 channels + GELU, i.e. vit_t16's grid and width without its cost,
so the numbers measure the evaluator rather than the backbone), runs ``evaluate`` once and reports its
wall time and the increase of the process's peak RSS during the call (``ru_maxrss``). Evaluators run
with their registered ``test_options`` overridden only where noted in ``OPTIONS`` (defaults otherwise),
single-threaded (``torch.set_num_threads(1)``). ``--append`` adds the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVALUATORS = (
    "linear_seg",
    "kmeans_seg",
    "overcluster",
    "hummingbird",
    "knn",
    "linear_cls",
    "concentration",
    "dse",
)
#: Defaults, except the fewer k-means seeds/restarts that keep the sweep within minutes on a shared CPU.
OPTIONS: dict[str, dict[str, Any]] = {
    "kmeans_seg": {"seeds": [0], "n_init": 1},
    "overcluster": {"seeds": [0], "n_init": 1},
}
ROOT = Path(__file__).resolve().parents[2]


class _InMemory:
    """Pre-rendered items with the dataset attributes evaluators read."""

    def __init__(self, split: str, n: int) -> None:
        from dssl.api import get_component

        entry = get_component("dataset", "embedded")
        ds = entry.load()(entry.options_model()(size=96, num_train=n, num_val=n, seed=0), split=split, data_root=None)
        self.items = [ds[i] for i in range(n)]
        self.num_classes, self.ignore_index, self.class_names = ds.num_classes, ds.ignore_index, ds.class_names

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def _child(name: str, n: int) -> None:
    import torch
    from dssl.api import get_component

    torch.set_num_threads(1)
    train, val = _InMemory("train", n), _InMemory("val", n)
    torch.manual_seed(0)
    embed = torch.nn.Conv2d(3, 192, 16, 16).eval()

    def dense(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(embed(x)).permute(0, 2, 3, 1)

    def image(x: torch.Tensor) -> torch.Tensor:
        return dense(x).mean(dim=(1, 2))

    entry = get_component("evaluator", name)
    evaluator = entry.load()(entry.options_model().model_validate(OPTIONS.get(name, {})))
    fn = image if getattr(evaluator, "feature_kind", "dense") == "image" else dense
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = evaluator.evaluate(features=fn, train=train, val=val, dataset_name="embedded", device="cpu")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    first = next(iter(result.metrics))
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - before) / 1024, "metric": first}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--evaluators", nargs="+", default=list(EVALUATORS))
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("EVALUATOR", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return

    rows: list[tuple[str, int, float, float]] = []
    for name in args.evaluators:
        for n in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, str(n)], capture_output=True, text=True, check=True
            )
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((name, n, rec["seconds"], rec["peak_mb"]))
            print(f"{name:<14} N={n:<5} {rec['seconds']:8.2f} s  +{rec['peak_mb']:8.1f} MB", flush=True)

    import torch

    header = "| evaluator | " + " | ".join(f"N={n} time (s) / +peak RSS (MB)" for n in args.sizes) + " |"
    lines = [header, "|" + "---|" * (len(args.sizes) + 1)]
    for name in args.evaluators:
        cells = [f"{s:.2f} / {m:.0f}" for (e, _, s, m) in rows if e == name]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.append:
        command = "PYTHONPATH=harness python benchmarks/perf/evaluators_scaling.py " + " ".join(sys.argv[1:])
        machine = f"{platform.machine()} {platform.processor() or ''}".strip()
        section = (
            f"\n## Evaluator scaling ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n"
            f"Machine: {machine}, {platform.system()}, 1 torch thread (shared 2-core box, numbers noisy); "
            f"python {platform.python_version()}, torch {torch.__version__}.\n"
            f"Command: `{command}`\n"
            "N train + N val embedded images at 96 px, synthetic 6x6x192 features (random patch embedding), "
            f"options = defaults except {OPTIONS}. Peak = increase of the process's max RSS during evaluate().\n\n"
            f"{table}\n"
        )
        results = ROOT / "benchmarks" / "RESULTS.md"
        if not results.exists():
            results.write_text("# Benchmark results\n")
        with results.open("a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
