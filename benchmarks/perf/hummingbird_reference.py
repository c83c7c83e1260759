"""Hummingbird evaluator vs a straightforward implementation of the reference protocol, same features.

Usage::

    python benchmarks/perf/hummingbird_reference.py                 # N = 128 train + 128 val images
    python benchmarks/perf/hummingbird_reference.py --sizes 64 256 --no-append

Both sides get the same frozen *synthetic* features of the same embedded images (96 px; a fixed random
16x16 patch-embedding convolution to 192 channels + GELU, as in ``evaluators_scaling.py``) and keep
**every** training patch in memory (``memory_size=None``, so no sampling can differ). The straightforward
side is what the reference protocol says, written without any of the evaluator's machinery: features of
all images at once, soft patch labels by average-pooling one-hot masks (ignore → class 0, as the reference),
the full query × memory cosine matrix, ``topk``, ``softmax(cos / 0.02)``-weighted label transfer, bilinear
upsampling of the label maps, argmax, and a confusion matrix in numpy. Reported: both mIoUs (they must be
equal up to neighbour ties) and wall times; the ratio is evaluator / straightforward.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import append_section, median


def _features() -> Any:
    import torch

    torch.manual_seed(0)
    embed = torch.nn.Conv2d(3, 192, 16, 16).eval()

    def dense(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.nn.functional.gelu(embed(x)).permute(0, 2, 3, 1)

    return dense


def straightforward_miou(features: Any, train: Any, val: Any, k: int, temperature: float) -> float:
    """The reference protocol in a few lines (all train patches in memory, exact search)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from dssl.plugin import normalize

    c = train.num_classes

    def load(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([ds[i]["image"] for i in range(len(ds))])
        masks = torch.stack([ds[i]["mask"] for i in range(len(ds))]).long()
        return features(normalize(images)), masks

    train_feats, train_masks = load(train)
    _, h, w, d = train_feats.shape
    labels = torch.where(train_masks == train.ignore_index, 0, train_masks)
    one_hot = F.one_hot(labels, c).permute(0, 3, 1, 2).float()
    soft = F.adaptive_avg_pool2d(one_hot, (h, w)).permute(0, 2, 3, 1).reshape(-1, c)
    memory = F.normalize(train_feats.reshape(-1, d), dim=1)

    val_feats, val_masks = load(val)
    queries = F.normalize(val_feats.reshape(-1, d), dim=1)
    sims, idx = (queries @ memory.T).topk(k, dim=1)
    weights = torch.softmax(sims / temperature, dim=1)
    transferred = (weights.unsqueeze(-1) * soft[idx]).sum(1)
    maps = transferred.reshape(len(val), h, w, c).permute(0, 3, 1, 2)
    up = F.interpolate(maps, size=val_masks.shape[-2:], mode="bilinear", align_corners=False)
    pred, gt = up.argmax(1).numpy().ravel(), val_masks.numpy().ravel()
    keep = gt != val.ignore_index
    conf = np.bincount(gt[keep] * c + pred[keep], minlength=c * c).reshape(c, c)
    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    present = conf.sum(1) > 0  # classes without ground truth are left out (the evaluator's exclude_no_gt)
    return float(100.0 * (tp[present] / union[present]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128], help="train (= val) images")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; median reported")
    parser.add_argument("--no-append", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    import torch
    from dssl.api import get_component
    from evaluators_scaling import _InMemory

    torch.set_num_threads(1)
    features = _features()
    hummingbird = get_component("evaluator", "hummingbird")
    options = hummingbird.options_model()(memory_size=None, search="torch")
    rows = []
    for n in args.sizes:
        train, val = _InMemory("train", n), _InMemory("val", n)
        ours, theirs = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = hummingbird.load()(options).evaluate(
                features=features, train=train, val=val, dataset_name="embedded"
            )
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            reference = straightforward_miou(features, train, val, options.num_neighbours, options.temperature)
            theirs.append(time.perf_counter() - start)
        value = result.metrics["miou"].value
        rows.append((n, value, reference, median(ours), median(theirs)))
    lines = [
        "| N train = N val | evaluator mIoU | straightforward mIoU | evaluator s | straightforward s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {a:.3f} | {b:.3f} | {ta:.2f} | {tb:.2f} | {ta / tb:.2f} |" for n, a, b, ta, tb in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_append:
        path = append_section(
            "Hummingbird vs straightforward reference",
            details=[
                "Same synthetic features (fixed random 16x16 patch embedding to 192 channels + GELU) of embedded "
                "96 px images; every train patch in memory (`memory_size=None`, torch exact search), k = 30, "
                f"T = 0.02; median of {args.repeats} runs each. Ratio = evaluator time / straightforward time "
                "(the straightforward side holds the whole query x memory matrix; the evaluator searches in "
                "bounded blocks and also handles class-balanced sampling, which is off here).",
            ],
            table=table,
            threads=1,
        )
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
