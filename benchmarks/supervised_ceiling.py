"""What the main job's backbone reaches with labels in the same number of steps: a ceiling for short SSL runs.

Usage::

    python benchmarks/supervised_ceiling.py                  # 200 steps of 32 images at 64 px, as the cpu preset
    python benchmarks/supervised_ceiling.py --steps 400 --size 96

Builds the main job's backbone (``vit_t16``, seed 0, random init, exactly as ``dssl bench`` builds it), trains it
*with the embedded masks* — a 1x1 convolution on the patch tokens, logits bilinearly upsampled, pixel-wise
cross-entropy, AdamW — on the embedded training split resized to the global-crop side (no other augmentation),
and scores the ``linear_seg@1`` probe (default options, the main job's 512 train / 256 val images) before and
after. Nothing here is self-supervised: it measures how far the backbone and the probe *can* move in that many
steps when the signal is the label itself, which bounds what a self-supervised objective can show at the same
scale (``benchmarks/trained_vs_random.py``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_t16")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="training side in pixels (the cpu preset's global crop)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from dssl.api import resolve
    from dssl.data.embedded import EmbeddedDataset
    from dssl.data.normalize import normalize
    from dssl.evaluators.linear_seg import LinearSegEvaluator
    from dssl.host import get_host
    from dssl.runner import build_backbone, build_eval_datasets

    host = get_host()
    config = resolve(
        host=host, sets=["tracking.enabled=false"], objective="dino", backbone=args.backbone, seed=args.seed
    )
    torch.manual_seed(args.seed)
    backbone = build_backbone(config, host)
    eval_train, eval_val = build_eval_datasets(config, host)
    options = config.dataset.options
    train = EmbeddedDataset("train", size=options.get("size", 96), seed=options.get("seed", 0))

    def probe(label: str) -> None:
        backbone.eval()
        started = time.perf_counter()
        with torch.inference_mode():
            result = LinearSegEvaluator().evaluate(
                features=backbone.features, train=eval_train, val=eval_val, dataset_name="embedded"
            )
        metrics = {k: round(v.value, 2) for k, v in result.metrics.items()}
        print(f"{label:28s} linear_seg@1 {metrics} ({time.perf_counter() - started:.0f} s)", flush=True)
        backbone.train()

    probe("random init")
    head = torch.nn.Conv2d(backbone.embed_dim, train.num_classes, kernel_size=1)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=args.lr, weight_decay=0.04)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        items = [train[i] for i in torch.randint(0, len(train), (args.batch_size,), generator=generator).tolist()]
        images = torch.stack([it["image"] for it in items])
        masks = torch.stack([it["mask"] for it in items])
        if args.size != images.shape[-1]:
            images = F.interpolate(images, size=args.size, mode="bilinear", antialias=True)
            masks = F.interpolate(masks[:, None].float(), size=args.size, mode="nearest")[:, 0].long()
        tokens = backbone.features(normalize(images)).permute(0, 3, 1, 2)
        logits = F.interpolate(head(tokens), size=masks.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks, ignore_index=train.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    probe(f"supervised, {args.steps} steps")


if __name__ == "__main__":
    main()
