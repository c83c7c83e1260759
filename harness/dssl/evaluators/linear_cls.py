"""Linear classification of frozen image features with a one-pass learning-rate sweep (``linear_cls@1``).

All ``L`` heads of the sweep are one batched parameter, weights ``(L, D, C)`` and biases ``(L, C)``:
every mini-batch of cached features is read once and scored by all heads with one ``einsum``. The loss
is the *sum* of the heads' mean cross-entropies, so each head receives exactly the gradient it would get
alone; the per-head learning rate is applied by scaling that head's update (plain SGD with momentum and
weight decay is linear in the learning rate, so this equals ``L`` separate optimisers).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dssl.evaluators.base import EvaluationInputs, ImageEvaluator, Measurement
from dssl.evaluators.extraction import batches
from dssl.evaluators.linear_cls_config import LinearClsOptions
from dssl.results import MetricValue


def train_linear_heads(
    x: Tensor,
    y: Tensor,
    *,
    num_classes: int,
    lrs: list[float],
    epochs: int,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Train one linear head per learning rate, simultaneously.

    Args:
        x: ``(N, D)`` float32 features.
        y: ``(N,)`` int64 labels.

    Returns:
        ``(weight (L, D, C), bias (L, C))``.
    """
    n, d = x.shape
    g = torch.Generator().manual_seed(seed)
    weight = (torch.randn(d, num_classes, generator=g) * 0.01).expand(len(lrs), d, num_classes).clone()
    weight = weight.to(x.device).requires_grad_(True)
    bias = torch.zeros(len(lrs), num_classes, device=x.device, requires_grad=True)
    lr = torch.tensor(lrs, dtype=torch.float32, device=x.device)
    buffers = [torch.zeros_like(weight), torch.zeros_like(bias)]
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        for idx in batches(n, batch_size, g):
            logits = torch.einsum("nd,ldc->lnc", x[idx], weight) + bias[:, None]  # (L, B, C)
            loss = F.cross_entropy(logits.flatten(0, 1), y[idx].repeat(len(lrs)), reduction="none")
            loss = loss.view(len(lrs), -1).mean(dim=1).sum()
            grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
            factor = 0.5 * (1.0 + math.cos(math.pi * step / total))  # cosine to 0, per step
            with torch.no_grad():
                for param, grad, buf in ((weight, grad_w, buffers[0]), (bias, grad_b, buffers[1])):
                    grad = grad + weight_decay * param
                    buf.mul_(momentum).add_(grad)
                    scale = (lr * factor).view(-1, *([1] * (param.ndim - 1)))
                    param.sub_(scale * buf)
            step += 1
    return weight.detach(), bias.detach()


class LinearClsEvaluator(ImageEvaluator[LinearClsOptions]):
    """Top-1 of linear classifiers on frozen image features, best over a learning-rate sweep.

    Example:
        >>> ev = LinearClsEvaluator(LinearClsOptions(epochs=10))  # doctest: +SKIP
        >>> ev.evaluate(features=image_fn, train=tr, val=va, dataset_name="embedded").metrics["top1"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "linear_cls"
    protocol: ClassVar[str] = "linear_cls"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[LinearClsOptions]] = LinearClsOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Extract image features once, train all heads on ``train``, score them on ``val``.

        Returns:
            ``top1`` (best learning rate) and ``top1_lr<lr>`` for every learning rate, in percent.
        """
        opts = self.options
        device = inputs.device
        num_classes, (train_x, train_y), (val_x, val_y) = self.extract_splits(inputs)
        with torch.inference_mode(False), torch.enable_grad():
            weight, bias = train_linear_heads(
                train_x.to(device),
                train_y.to(device),
                num_classes=num_classes,
                lrs=list(opts.lrs),
                epochs=opts.epochs,
                batch_size=opts.batch_size,
                momentum=opts.momentum,
                weight_decay=opts.weight_decay,
                seed=opts.seed,
            )
        with torch.inference_mode():
            logits = torch.einsum("nd,ldc->lnc", val_x.to(device), weight) + bias[:, None]
            top1 = (logits.argmax(dim=2).cpu() == val_y[None]).float().mean(dim=1) * 100.0  # (L,)
        best = int(top1.argmax())
        metrics = {"top1": MetricValue(value=float(top1[best]))}
        metrics.update({f"top1_lr{lr:g}": MetricValue(value=float(t)) for lr, t in zip(opts.lrs, top1, strict=True)})
        settings = {
            "lrs": list(opts.lrs),
            "best_lr": opts.lrs[best],
            "selection": "best val top-1 over lrs",
            "epochs": opts.epochs,
            "batch_size": opts.batch_size,
            "optimizer": "sgd",
            "momentum": opts.momentum,
            "weight_decay": opts.weight_decay,
            "schedule": "cosine-per-step",
            "init": "normal(0, 0.01), bias 0",
            "seed": opts.seed,
            "augmentation": "none",
            "num_classes": num_classes,
            "input_size": self.input_size_setting(),
            "feature_dim": int(train_x.shape[1]),
            "train_images": int(train_x.shape[0]),
            "val_images": int(val_x.shape[0]),
        }
        return metrics, settings
