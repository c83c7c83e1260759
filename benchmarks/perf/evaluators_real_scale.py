"""Wall time, CPU time and peak memory of every dense evaluator on features the size of real benchmarks.

Usage::

    PYTHONPATH=harness python benchmarks/perf/evaluators_real_scale.py --small          # quick check (~1 min)
    PYTHONPATH=harness python benchmarks/perf/evaluators_real_scale.py --shapes voc --evaluators kmeans_seg \\
        --out runs.jsonl
    PYTHONPATH=harness python benchmarks/perf/evaluators_real_scale.py --report runs.jsonl --append

Shapes (``--shapes``):

* ``voc``: Pascal VOC 2012 at the NeCo protocol: 1,449 val and 10,582 trainaug images at 448x448, ViT-S/16
  features (28x28 = 784 patch tokens of width 384, 1.14 M val tokens), 21 classes, ignore 255;
* ``ade``: ADE20K: 2,000 val and 20,210 train images at 448x448 (same grid and width), 151 classes with
  0 = "other" ignored (NeCo / open-hummingbird-eval convention).

Nothing comes from a backbone. Every item of the synthetic dataset is generated from its index: a mask of
1-4 rectangles of random classes on the patch grid over a random background class (VOC: 4-pixel ignore
borders around the objects, as VOC's void boundaries), upsampled to 448 px; the image carries its label
map in channel 0. The feature function reads the label at every patch centre and returns that class's
fixed random mean plus Gaussian noise, so features carry a class signal and k-means and probes do
realistic work. The synthetic extraction (dataset items, normalisation, ``randn``) is inside the timings;
the ``extraction`` row measures it alone (one pass over val, default dense options).

Every (evaluator, shape) runs in its own subprocess so that the peak RSS (``ru_maxrss``, whole process,
Python + torch included) is the evaluator's; CPU time is the child's user + system time (all threads,
faiss's OpenMP ones included). ``--threads`` sets torch, OpenMP, BLAS and faiss threads. Evaluators run
with their registered defaults unless ``--opts NAME=JSON`` overrides them; ``--train-fraction NAME=F`` /
``--val-fraction NAME=F`` run an evaluator on the first ``F`` of the images when the full shape cannot
finish in time (the table says so: its image counts are the ones used). Records are appended to ``--out``
(one JSON line each) as they finish; ``--report`` renders them and ``--append`` adds the table to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Shape:
    """A benchmark dataset's size: image counts, input size, ViT patch and width, label space."""

    name: str
    val_images: int
    train_images: int
    image_size: int
    patch: int
    dim: int
    num_classes: int
    ignore_index: int


SHAPES = {
    "voc": Shape("voc", 1449, 10582, 448, 16, 384, 21, 255),
    "ade": Shape("ade", 2000, 20210, 448, 16, 384, 151, 0),
}
#: ``--small``: the same label spaces on a few 224 px images (14x14 grid), for a check in about a minute.
SMALL = {name: Shape(name, 24, 48, 224, 16, 384, s.num_classes, s.ignore_index) for name, s in SHAPES.items()}
#: Every dense evaluator (``extraction`` = the synthetic extraction alone, the floor under every row).
EVALUATORS = (
    "extraction",
    "linear_seg",
    "linear_seg_neco",
    "kmeans_seg",
    "overcluster",
    "overcluster_neco",
    "hummingbird",
    "concentration",
    "dse",
)
#: ``--small`` overrides that keep the quick check quick (fewer epochs, seeds and clusters).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "linear_seg": {"epochs": 2},
    "linear_seg_neco": {"epochs": 2},
    "kmeans_seg": {"seeds": [0], "n_init": 1},
    "overcluster": {"seeds": [0], "n_init": 1, "ks": [50]},
    "overcluster_neco": {"seeds": [0], "n_init": 1, "ks": ["num_classes", 200]},
    "hummingbird": {"memory_size": 2048},
}
#: Scale of the class means relative to the unit noise (separation of two means ~ 0.3 * sqrt(2 * 384)).
MEAN_SCALE = 0.3


class SyntheticSegmentation:
    """Deterministic segmentation items of a :class:`Shape`, generated from their index (no storage).

    Args:
        shape: Sizes and label space.
        split: ``"train"`` or ``"val"`` (different items).
        num_images: Items in the split.
    """

    def __init__(self, shape: Shape, split: str, num_images: int) -> None:
        self.shape, self.split, self.num_images = shape, split, num_images
        self.num_classes, self.ignore_index = shape.num_classes, shape.ignore_index
        self.class_names = tuple(f"class{i}" for i in range(shape.num_classes))

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        s = self.shape
        grid = s.image_size // s.patch
        g = torch.Generator().manual_seed(index * 2 + (self.split == "val"))
        labelled = [c for c in range(s.num_classes) if c != s.ignore_index]

        def draw() -> int:
            return labelled[int(torch.randint(len(labelled), (1,), generator=g))]

        coarse = torch.full((grid, grid), draw(), dtype=torch.int64)
        boxes = []
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            y0, x0 = (int(v) for v in torch.randint(0, grid - 2, (2,), generator=g))
            hh, ww = (int(v) for v in torch.randint(2, grid // 2, (2,), generator=g))
            coarse[y0 : y0 + hh, x0 : x0 + ww] = draw()
            boxes.append((y0 * s.patch, x0 * s.patch, min(grid, y0 + hh) * s.patch, min(grid, x0 + ww) * s.patch))
        if s.ignore_index == 0:  # ADE20K: some "other" (ignored) patches
            coarse[torch.rand((grid, grid), generator=g) < 0.05] = 0
        mask = coarse.repeat_interleave(s.patch, 0).repeat_interleave(s.patch, 1)
        if s.ignore_index == 255:  # VOC: void boundaries around the objects
            for y0, x0, y1, x1 in boxes:
                mask[y0 : y0 + 4, x0:x1] = 255
                mask[max(y0, y1 - 4) : y1, x0:x1] = 255
        image = torch.full((3, s.image_size, s.image_size), 0.5)
        image[0] = mask.to(torch.float32) / 255.0
        return {"image": image, "mask": mask}


def synthetic_features(shape: Shape, seed: int = 0) -> Any:
    """The feature function: class mean of the label at each patch centre plus unit Gaussian noise.

    Returns:
        ``(B, 3, H, W)`` ImageNet-normalised images -> ``(B, H/patch, W/patch, dim)`` float32 features.
    """
    import torch
    from dssl.plugin import IMAGENET_MEAN, IMAGENET_STD

    g = torch.Generator().manual_seed(seed)
    means = torch.randn(256, shape.dim, generator=g) * MEAN_SCALE  # one row per possible label byte
    noise = torch.Generator().manual_seed(seed + 1)
    half = shape.patch // 2

    def features(x: torch.Tensor) -> torch.Tensor:
        centre = x[:, 0, half :: shape.patch, half :: shape.patch] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        labels = (centre * 255.0).round().clamp(0, 255).to(torch.int64)  # (B, h, w)
        return means[labels] + torch.randn((*labels.shape, shape.dim), generator=noise)

    return features


def _set_threads(threads: int) -> None:
    """Torch, BLAS/OpenMP (set before numpy is imported, in the child's environment) and faiss threads."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss  # type: ignore[import-not-found]

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one evaluator on one shape; returns the measurement record."""
    import torch
    from dssl.api import get_component
    from dssl.plugin import EvaluationInputs, dataset_info

    _set_threads(spec["threads"])
    shape = Shape(**spec["shape"])
    train = SyntheticSegmentation(shape, "train", spec["train_images"])
    val = SyntheticSegmentation(shape, "val", spec["val_images"])
    fn = synthetic_features(shape)
    name = spec["evaluator"]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = time.process_time()
    start = time.perf_counter()
    if name == "extraction":
        # One pass of the dense feature extraction every dense evaluator runs (DenseEvaluator.extract), with the
        # default DenseEvalOptions (linear_seg's defaults: native size, float32 cache).
        entry = get_component("evaluator", "linear_seg")
        extractor = entry.load()(entry.options_model()())
        inputs = EvaluationInputs(
            features=fn, train=train, val=val, dataset_name=shape.name, device="cpu", progress=None
        )
        cache = extractor.extract(inputs, "val", info=dataset_info(val, "val"), dtype=torch.float32)
        metric = ("feature_gb", cache.features.nbytes / 1024**3)
    else:
        entry = get_component("evaluator", name)
        evaluator = entry.load()(entry.options_model().model_validate(spec["options"]))
        result = evaluator.evaluate(features=fn, train=train, val=val, dataset_name=shape.name, device="cpu")
        first = next(iter(result.metrics))
        metric = (first, result.metrics[first].value)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **spec,
        "wall_s": wall,
        # process_time covers every thread of the process (faiss/OpenMP workers too).
        "cpu_s": time.process_time() - cpu_before,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        "rss_before_gb": rss_before / 1024**2,
        "metric": metric[0],
        "value": metric[1],
    }


def _parse_pairs(items: list[str], kind: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = json.loads(value) if kind is dict else kind(value)
    return out


def _run_one(spec: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    threads = str(spec["threads"])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "harness"), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - started}
    if out.returncode != 0:
        return {**spec, "error": (out.stderr.strip().splitlines() or ["?"])[-1], "wall_s": None}
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(records: list[dict[str, Any]]) -> str:
    """Markdown table of measurement records."""
    lines = [
        "| evaluator | shape | train imgs | val imgs | options (non-default) | wall s | CPU s | peak RSS GB "
        "| threads | first metric |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in records:
        opts = json.dumps(r.get("options") or {}, separators=(",", ":")) if r.get("options") else "defaults"
        train = r["train_images"] if r["evaluator"] in ("linear_seg", "linear_seg_neco", "hummingbird") else "-"
        if "error" in r:
            cells = [f"not finished: {r['error']}", "", "", ""]
        else:
            cells = [f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_rss_gb']:.2f}", str(r["threads"])]
        metric = "" if "error" in r else f"{r['metric']} {r['value']:.2f}"
        lines.append(
            f"| {r['evaluator']} | {r['shape']['name']} | {train} | {r['val_images']} | `{opts}` | "
            + " | ".join(cells)
            + f" | {metric} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["voc", "ade"])
    parser.add_argument("--evaluators", nargs="+", default=list(EVALUATORS))
    parser.add_argument("--small", action="store_true", help="a few 224 px images, short options: a quick check")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--val-images", type=int, help="override the shape's val image count")
    parser.add_argument("--train-images", type=int, help="override the shape's train image count")
    parser.add_argument("--train-fraction", nargs="*", default=[], metavar="NAME=F")
    parser.add_argument("--val-fraction", nargs="*", default=[], metavar="NAME=F")
    parser.add_argument("--opts", nargs="*", default=[], metavar="NAME=JSON", help="evaluator option overrides")
    parser.add_argument("--timeout", type=float, help="seconds per evaluator run")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--report", nargs="*", type=Path, help="render these JSONL files instead of running")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--note", nargs="*", default=[], help="extra lines for the RESULTS.md section")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return

    if args.report is not None:
        records = [json.loads(line) for path in args.report for line in path.read_text().splitlines() if line]
    else:
        load = os.getloadavg()[0]
        print(f"1-minute load average at start: {load:.2f}", flush=True)
        shapes = SMALL if args.small else SHAPES
        train_frac = _parse_pairs(args.train_fraction, float)
        val_frac = _parse_pairs(args.val_fraction, float)
        overrides = _parse_pairs(args.opts, dict)
        records = []
        for shape_name in args.shapes:
            shape = shapes[shape_name]
            for name in args.evaluators:
                options = {**(SMALL_OPTIONS.get(name, {}) if args.small else {}), **overrides.get(name, {})}
                val_n = args.val_images or shape.val_images
                train_n = args.train_images or shape.train_images
                spec = {
                    "evaluator": name,
                    "shape": asdict(shape),
                    "train_images": max(1, round(train_n * train_frac.get(name, 1.0))),
                    "val_images": max(1, round(val_n * val_frac.get(name, 1.0))),
                    "options": options,
                    "threads": args.threads,
                    "load_at_start": load,
                }
                record = _run_one(spec, args.timeout)
                records.append(record)
                print(render([record]).splitlines()[-1], flush=True)
                if args.out is not None:
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
    table = render(records)
    print(table)
    if args.append:
        from _report import append_section

        loads = sorted({f"{r['load_at_start']:.1f}" for r in records if "load_at_start" in r})
        append_section(
            "Dense evaluators at real scale (VOC / ADE20K shapes, synthetic features)",
            details=[
                "Shared 2-core VM under load from other jobs: wall times are distorted, CPU s is the child "
                f"process's user + system time (all threads). 1-minute load averages at the start of the runs: "
                f"{', '.join(loads)}.",
                "Synthetic features (class mean + unit noise, 28x28x384 per 448 px image) and synthetic masks, "
                "see the script's docstring; one subprocess per row, peak RSS = the whole process's maximum "
                "resident set (Python, torch and the generated dataset included). Rows with fewer images than "
                "the shape (VOC val 1,449 / trainaug 10,582; ADE20K val 2,000 / train 20,210) ran on that "
                "fraction because the full shape could not finish in the time available; nothing is "
                "extrapolated. `train imgs` only for evaluators that use the train split.",
                *args.note,
            ],
            table=table,
            threads=records[0]["threads"] if records else None,
        )


if __name__ == "__main__":
    main()
