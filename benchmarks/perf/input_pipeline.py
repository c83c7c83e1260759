"""Can the CPUs feed a GPU? Real-data input pipeline rate per CPU core: JPEG decode + multi-crop with geometry.

Usage::

    python benchmarks/perf/input_pipeline.py                        # before and after, 300 JPEGs, appends RESULTS.md
    python benchmarks/perf/input_pipeline.py --path after --images 100 --no-append
    WT=/work/main . wtenv.sh && python benchmarks/perf/input_pipeline.py --path before   # main's own code

What runs: a flat image folder of generated 500 x 375 JPEGs (quality 90, smooth colour fields, shapes,
texture and sensor noise, about the entropy of a photo of that size) read by the ``imagefolder`` dataset,
then the GPU preset's augmentation (``multicrop``: 2 x 224 + 10 x 96 px views with their boxes and flips,
DINO's photometric ops), one image at a time in one process with one torch thread, as a DataLoader worker
runs it. Two paths of the same library, selected with ``--path``:

* ``before``: the dataset item (PIL decode, conversion of the whole image to float) and the augmentation on
  the float image (the only path before uint8 decoding existed);
* ``after``: ``dataset.image_uint8`` (the same PIL decode, no float image) and the augmentation on the uint8
  image (views cropped and resized in 8 bits, then converted to float), the path the training loader takes
  for file datasets; the photometric ops are the same code for both paths (channels-last blur, jitter in
  place per image, in-place hue: bit-identical to the earlier kernels, faster). A row also times
  ``torchvision.io.decode_jpeg`` for comparison.

Stages, each timed on its own over every image (process CPU time, the honest per-core figure on a shared
machine; wall time beside it): **decode**, **crops** (box sampling, crop, resize, flip, to float),
**photometric** (colour jitter, grayscale, blur, solarisation, normalisation) and **total**, the whole
sample as the loader makes it (timed separately, not the sum). Rates are images per CPU-second,
each stage the best of 3 passes over the folder.

The needed rate per core is the published DINO ViT-S/16 training rate scaled to one H100 (an estimate, see
:data:`PUBLISHED` and ``--h100-speedup``) divided by the loader workers a 16-core machine can run beside the
training process (``--workers``, default 14).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_section

#: facebookresearch/dino README ("Vanilla DINO training"): ViT-S/16, 100 epochs on ImageNet-1k train
#: (1,281,167 images) with main_dino.py's defaults (2 x 224 + 8 x 96 crops, fp16, 64 images per GPU) on one node
#: of 8 GPUs: "Training time is 1.75 day". The README does not name the GPU; the repository's launcher requests
#: Volta GPUs (run_with_submitit.py's --use_volta32 for ViT-B), so it is taken as a V100.
PUBLISHED = {"images": 100 * 1_281_167, "seconds": 1.75 * 86_400, "gpus": 8, "locals": 8}

#: Relative cost of one DINO image with ``n`` locals at 224/96 px on ViT-S/16: the student's forward + backward
#: (about 3 forward-equivalents per token) over 2 x 197 + n x 37 tokens, the teacher's forward over 2 x 197.
STUDENT_TOKENS_GLOBAL, STUDENT_TOKENS_LOCAL = 197, 37


def relative_cost(n_local: int) -> float:
    """Forward-equivalent token count of one training image with ``n_local`` local crops (2 globals)."""
    return 3 * (2 * STUDENT_TOKENS_GLOBAL + n_local * STUDENT_TOKENS_LOCAL) + 2 * STUDENT_TOKENS_GLOBAL


def render_photo(rng: Any, width: int, height: int) -> Any:
    """A photo-like RGB PIL image (``rng``: a numpy Generator): colour fields at two scales, 4-12 flat shapes,
    fine texture and sensor noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    def field(rows: int, cols: int, amplitude: float) -> np.ndarray:
        small = np.clip(128 + rng.normal(0, amplitude, (rows, cols, 3)), 0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), dtype=np.float32) - 128

    base = rng.uniform(40, 200, 3).astype(np.float32)
    image = Image.fromarray(np.clip(base + field(4, 5, 50) + field(24, 32, 18), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.uniform(-50, width), rng.uniform(-50, height)
        x1, y1 = x0 + rng.uniform(20, 250), y0 + rng.uniform(20, 200)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            corners = int(rng.integers(3, 7))
            corner_points = [(float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))) for _ in range(corners)]
            draw.polygon(corner_points, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5))))
    pixels = np.asarray(image, dtype=np.float32) + field(height // 3, width // 3, 14)
    pixels += rng.normal(0, 6, (height, width, 1)) + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_folder(root: Path, count: int, width: int, height: int, quality: int) -> Path:
    """``root/train/<i>.jpg``: ``count`` photo-like JPEGs (seeded); returns the split folder."""
    import numpy as np

    split = root / "train"
    split.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        render_photo(rng, width, height).save(split / f"{i:05d}.jpg", quality=quality)
    return split


def clock(step: Callable[[int], object], count: int, passes: int = 3) -> tuple[float, float]:
    """``(CPU seconds, wall seconds)`` of ``step(i)`` for ``i < count``, best of ``passes`` passes after a warm-up call.

    The best pass is the one least disturbed by other processes on a shared machine.
    """
    step(0)
    best = (float("inf"), float("inf"))
    for _ in range(passes):
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(count):
            step(i)
        best = min(best, (time.process_time() - cpu, time.perf_counter() - wall))
    return best


def measure(path: str, dataset: object, augmentation: object, count: int) -> dict[str, tuple[float, float]]:
    """Seconds (CPU, wall) per stage over ``count`` images on one path (``"before"`` or ``"after"``)."""
    import torch
    from dssl.plugin import DRAWS, normalize

    if path == "after" and not hasattr(dataset, "image_uint8"):
        raise SystemExit("--path after needs the uint8 decode (dataset.image_uint8); this dssl has only 'before'")
    read: Callable[[int], torch.Tensor] = (
        dataset.image_uint8 if path == "after" else (lambda i: dataset[i]["image"])  # type: ignore[attr-defined,index]
    )
    mc = augmentation
    o = mc.options
    images = [read(i) for i in range(count)]
    draws = [
        torch.rand(o.n_views, DRAWS.count, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        for i in range(count)
    ]

    def geometry(i: int) -> list[torch.Tensor]:
        image, u = images[i], draws[i]
        boxes = mc.sample_boxes(u, image.shape[-2], image.shape[-1])
        flips = u[:, DRAWS.flip] < o.hflip_p
        return [mc.render_geometry(image, boxes[a:b], flips[a:b], size) for a, b, size in mc._groups]

    rendered = [geometry(i) for i in range(count)]

    def photometric(i: int) -> None:
        for (a, b, _), group in zip(mc._groups, rendered[i], strict=True):
            normalize(mc.photometric(group.clone(), draws[i][a:b].float(), a))

    def clone_only(i: int) -> None:
        for group in rendered[i]:
            group.clone()

    stages = {"decode": clock(read, count)}
    if path == "after":  # for comparison only: torchvision's JPEG decoder (deprecated in torchvision 0.29)
        from torchvision.io import decode_jpeg, read_file

        files = [str(p) for p, _ in dataset.samples[:count]]
        stages["decode, torchvision.io (not used)"] = clock(lambda i: decode_jpeg(read_file(files[i])), count)
    stages |= {
        "crops": clock(geometry, count),
        "photometric": clock(photometric, count),
        "total": clock(lambda i: mc(read(i), generator=torch.Generator().manual_seed(i)), count),  # type: ignore[operator]
    }
    copies = clock(clone_only, count)  # the clone that keeps the rendered views reusable is not photometric work
    cpu, wall = stages["photometric"]
    stages["photometric"] = (max(cpu - copies[0], 0.0), max(wall - copies[1], 0.0))
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=["before", "after", "both"], default="both", help="which decode + crop path")
    parser.add_argument("--images", type=int, default=300, help="generated JPEGs (each stage runs over all of them)")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--n-local", type=int, default=10, help="local crops (96 px); 2 globals of 224 px")
    parser.add_argument("--folder", type=Path, default=None, help="JPEG folder to reuse or keep (default: temp)")
    parser.add_argument("--workers", type=int, default=14, help="loader workers a 16-core machine runs beside training")
    parser.add_argument(
        "--h100-speedup",
        type=float,
        nargs=2,
        default=(3.0, 6.0),
        metavar=("LOW", "HIGH"),
        help="assumed H100 / V100 training-step speed ratio for ViT-S/16 (an estimate, see RESULTS.md)",
    )
    parser.add_argument("--tag", default="", help="label added to the path column (e.g. the commit measured)")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    import os

    import torch
    from dssl.api import get_component
    from dssl.plugin import MultiCrop, MultiCropOptions

    torch.set_num_threads(1)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="dssl-jpegs-") as tmp:
        root = args.folder or Path(tmp)
        split = root / "train"
        if not (split.is_dir() and len(list(split.glob("*.jpg"))) >= args.images):
            write_folder(root, args.images, args.width, args.height, args.quality)
        imagefolder = get_component("dataset", "imagefolder")
        options = imagefolder.options_model()(root=str(root), max_images=args.images)
        dataset = imagefolder.load()(options, split="train")
        kib = sum(p.stat().st_size for p, _ in dataset.samples) / len(dataset) / 1024
        augmentation = MultiCrop(MultiCropOptions(global_size=224, local_size=96, n_local=args.n_local))
        paths = ["before", "after"] if args.path == "both" else [args.path]
        results = {path: measure(path, dataset, augmentation, len(dataset)) for path in paths}

    count = len(dataset)
    published_rate = PUBLISHED["images"] / PUBLISHED["seconds"] / PUBLISHED["gpus"]
    ours = published_rate * relative_cost(PUBLISHED["locals"]) / relative_cost(args.n_local)
    low, high = (ours * s for s in args.h100_speedup)
    need_low, need_high = low / args.workers, high / args.workers
    header = "| path | stage | CPU ms / image | images / CPU-second (per core) | wall ms / image |"
    lines = [header, "|---|---|---|---|---|"]
    for path, stages in results.items():
        for stage, (cpu, wall) in stages.items():
            rate = count / cpu if cpu > 0 else float("inf")
            lines.append(
                f"| {path}{args.tag} | {stage} | {1000 * cpu / count:.2f} | {rate:.1f} | {1000 * wall / count:.2f} |"
            )
    if len(results) == 2:
        speedup = results["before"]["total"][0] / results["after"]["total"][0]
        lines.append(f"| after vs before | total | | **{speedup:.2f}x** | |")
    table = "\n".join(lines)
    facts = [
        f"JPEGs: {count} generated {args.width}x{args.height} px, quality {args.quality}, mean {kib:.0f} KiB; views: "
        f"2x224 + {args.n_local}x96 px with boxes and flips (DINO's photometric ops); one process, 1 torch thread; "
        f"1-minute load average {load.split(',')[0]} at start.",
        f"Published DINO ViT-S/16 rate: {PUBLISHED['images']:,} images in {PUBLISHED['seconds'] / 86400:.2f} days on "
        f"{PUBLISHED['gpus']} V100 = {published_rate:.1f} images/s per GPU with {PUBLISHED['locals']} locals, "
        f"{ours:.1f} with {args.n_local} (token-cost ratio). Estimate for one H100 at "
        f"{args.h100_speedup[0]:g}-{args.h100_speedup[1]:g}x a V100: {low:.0f}-{high:.0f} images/s; over "
        f"{args.workers} loader workers: **{need_low:.0f}-{need_high:.0f} images/s per core needed** (estimate).",
    ]
    print("\n".join(facts) + "\n\n" + table)
    if not args.no_append:
        path = append_section(
            "Input pipeline: JPEG decode + multi-crop per CPU core",
            details=facts,
            table=table,
            threads=1,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
