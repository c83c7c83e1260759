"""How far a linear probe gets on the embedded data from hand-made patch features (no learning at all).

Usage::

    python benchmarks/handmade_feature_probe.py            # 16x16 patches, 512 train / 256 val images at 96 px

Runs the ``linear_seg@1`` probe (default options) on two feature functions with the patch grid of a /16 ViT:

* ``raw``: the RGB pixels of each 16x16 patch (768 values) — about what a random-init ViT gives a probe;
* ``spectrum``: ``log(1 + |FFT|)`` of the patch's grayscale, mean-removed and contrast-normalised (16x9 values):
  colour- and position-invariant texture, the signal the embedded classes are defined by.

The gap between the two bounds what dense features learned on the embedded data can add over random ones.
"""

from __future__ import annotations

import argparse
import time

import torch


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    return x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5)  # (B, h, w, C, p, p)


def raw_pixels(p: int):
    def features(x: torch.Tensor) -> torch.Tensor:
        patches = _patches(x, p)
        return patches.reshape(*patches.shape[:3], -1)

    return features


def texture_spectrum(p: int):
    def features(x: torch.Tensor) -> torch.Tensor:
        gray = _patches(x.mean(1, keepdim=True), p)[:, :, :, 0]
        gray = gray - gray.mean((-1, -2), keepdim=True)
        gray = gray / (gray.std((-1, -2), keepdim=True) + 1e-3)
        spectrum = torch.fft.rfft2(gray).abs()
        return torch.log1p(spectrum.reshape(*spectrum.shape[:3], -1))

    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--val", type=int, default=256)
    args = parser.parse_args()

    from dssl.api import get_component

    torch.set_num_threads(1)
    dataset, evaluator = get_component("dataset", "embedded"), get_component("evaluator", "linear_seg")
    options = dataset.options_model()(size=96, num_train=args.train, num_val=args.val)
    train, val = (dataset.load()(options, split=split, data_root=None) for split in ("train", "val"))
    for name, fn in (("raw", raw_pixels(args.patch)), ("spectrum", texture_spectrum(args.patch))):
        start = time.perf_counter()
        result = evaluator.load()(evaluator.options_model()()).evaluate(
            features=fn, train=train, val=val, dataset_name="embedded"
        )
        metrics = {k: round(v.value, 2) for k, v in result.metrics.items()}
        print(f"{name:9s} patch {args.patch}: {metrics} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
