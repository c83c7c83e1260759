"""Linear segmentation probe on frozen patch features (protocol ``linear_seg``, version 1).

Pipeline:

1. Train and val features are extracted once each (:func:`~dssl.evaluators.extraction.extract_dense`)
   and kept in memory (train first, freed before val is extracted); masks are kept at scoring
   resolution (``mask_size``, default full input resolution).
2. A 1x1 convolution ``Conv2d(D, C, 1)`` (optionally after ``BatchNorm2d``) is trained on the cached
   features with cross-entropy (``ignore_index``) on logits bilinearly upsampled to the mask resolution.
   NeCo upsamples the *features* before the convolution; a 1x1 convolution and bilinear interpolation
   (whose weights sum to one) commute, so upsampling the C-channel logits instead gives the same logits
   at a fraction of the cost (C << D). (With ``batchnorm`` the training-time batch statistics are
   taken at patch resolution.)
3. Val predictions (argmax) are streamed into a confusion matrix; no matching (class ids are final).

Differences from NeCo/Leopart (methods §6.1), deliberately: no train-time crop/flip augmentation (the
features are cached), AdamW by default, full-resolution scoring by default, and classes absent from the
val ground truth are excluded from the mean by default (``absent_classes``).

Epoch selection: NeCo's ``linear_finetune.py`` scores the head on the validation set after every epoch
(its first ``val_iters: 512`` batches), keeps the best checkpoints (``ModelCheckpoint(monitor="miou_val",
mode="max", save_top_k=3)``) and ``eval_linear.py`` then scores a chosen head on the whole val set: the
published number is the best epoch's, chosen on the split it is reported on. Here the last epoch's head
is scored by default (no selection on the test split); ``select_best_epoch=True`` scores the head after
every epoch on the whole val split and reports the best one (the epoch and every epoch's mIoU are
recorded), which makes the difference from published numbers measurable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dssl.evaluators.base import DenseEvaluator, EvaluationInputs, Measurement, paired_info
from dssl.evaluators.confusion import ConfusionMatrix, miou, pixel_accuracy
from dssl.evaluators.extraction import DenseCache, ProgressFn, batches
from dssl.evaluators.linear_seg_config import LinearSegOptions
from dssl.results import MetricValue


class LinearSegEvaluator(DenseEvaluator[LinearSegOptions]):
    """Linear probe mIoU of frozen dense features.

    Example:
        >>> ev = LinearSegEvaluator(LinearSegOptions(epochs=5))  # doctest: +SKIP
        >>> result = ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc")  # doctest: +SKIP
        >>> result.metrics["miou"].value  # doctest: +SKIP
    """

    name: ClassVar[str] = "linear_seg"
    protocol: ClassVar[str] = "linear_seg"
    protocol_version: ClassVar[int] = 1
    options_model: ClassVar[type[LinearSegOptions]] = LinearSegOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Extract features, train the probe on ``train`` and score it on ``val``.

        Args:
            inputs: What :meth:`evaluate` received: the probe is trained on ``train`` and scored on ``val`` (same
                classes), on ``device``; progress stages, in order, ``features/train`` (images), ``train``
                (epochs), ``features/val`` (images) and ``eval`` (batches).

        Returns:
            ``miou`` and ``pixel_accuracy`` in percent, with every setting that moves them.
        """
        opts = self.options
        device, progress = inputs.device, inputs.progress
        info = paired_info(inputs)
        train_cache = self.extract(inputs, "train", info=info)
        selection: DenseCache | None = None
        if opts.select_best_epoch:
            # Scored after every epoch: both splits are in memory at once in this mode.
            selection = self.extract(inputs, "val", info=info)
        head, epoch_mious = self._train(train_cache, info.num_classes, info.ignore_index, device, progress, selection)
        train_facts = {"train_mask_size": list(train_cache.mask_hw), "train_images": len(train_cache.features)}
        train_dim = train_cache.dim
        # Only one split's cache is alive at a time: peak memory is max(train, val), not their sum.
        del train_cache
        val_cache = selection or self.extract(inputs, "val", info=info)
        if train_dim != val_cache.dim:
            raise ValueError(f"feature dims differ between train ({train_dim}) and val ({val_cache.dim})")
        conf = self._confusion(head, val_cache, info.num_classes, info.ignore_index, device, progress)
        if int(conf.sum()) == 0:
            raise ValueError("the val set has no pixel outside ignore_index; nothing to score")
        miou_value, _ = miou(conf, opts.absent_classes)
        settings = {
            **self.feature_settings(val_cache),
            "train_mask_size": train_facts["train_mask_size"],
            "feature_dtype": opts.feature_dtype,
            "num_classes": info.num_classes,
            "ignore_index": info.ignore_index,
            "absent_classes": opts.absent_classes,
            "matching": "none",
            "head": "batchnorm+conv1x1" if opts.batchnorm else "conv1x1",
            "batchnorm": opts.batchnorm,
            "optimizer": opts.optimizer,
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "momentum": opts.momentum if opts.optimizer == "sgd" else None,
            "schedule": opts.schedule,
            "step_epochs": opts.step_epochs if opts.schedule == "step" else None,
            "step_gamma": opts.step_gamma if opts.schedule == "step" else None,
            "epochs": opts.epochs,
            "select_best_epoch": opts.select_best_epoch,
            "best_epoch": (1 + max(range(len(epoch_mious)), key=epoch_mious.__getitem__)) if epoch_mious else None,
            "epoch_mious": [100.0 * m for m in epoch_mious] if epoch_mious else None,
            "batch_size": opts.batch_size,
            "logits_chunk_images": opts.logits_chunk_images,
            "seed": opts.seed,
            "augmentation": "none",
            "image_resize": "bilinear-antialias",
            "mask_resize": "nearest",
            "logits_upsample": "bilinear",
            "train_images": train_facts["train_images"],
            "val_images": len(val_cache.features),
        }
        metrics = {
            "miou": MetricValue(value=100.0 * miou_value),
            "pixel_accuracy": MetricValue(value=100.0 * pixel_accuracy(conf)),
        }
        return metrics, settings

    def _make_head(self, dim: int, num_classes: int) -> nn.Module:
        # Seeded without touching the caller's global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.options.seed)
            conv = nn.Conv2d(dim, num_classes, kernel_size=1)
        if self.options.batchnorm:
            return nn.Sequential(nn.BatchNorm2d(dim), conv)
        return conv

    def _train(
        self,
        cache: DenseCache,
        num_classes: int,
        ignore_index: int | None,
        device: torch.device | str,
        progress: ProgressFn | None,
        selection: DenseCache | None = None,
    ) -> tuple[nn.Module, list[float]]:
        """Fit the head on cached features; returns it in eval mode and the per-epoch val mIoUs (if any)."""
        # The engine may call us under inference or no-grad mode: the head, its optimiser state and the
        # graph must all be ordinary autograd tensors.
        with torch.inference_mode(False), torch.enable_grad():
            return self._fit(cache, num_classes, ignore_index, device, progress, selection)

    def _fit(
        self,
        cache: DenseCache,
        num_classes: int,
        ignore_index: int | None,
        device: torch.device | str,
        progress: ProgressFn | None,
        selection: DenseCache | None = None,
    ) -> tuple[nn.Module, list[float]]:
        """Train for ``epochs``; with a ``selection`` split, keep the epoch whose head scores best on it.

        Returns:
            The head in eval mode and the mIoU (in ``[0, 1]``) on ``selection`` after every epoch (empty
            without a selection split).
        """
        opts = self.options
        n = len(cache.features)
        head = self._make_head(cache.dim, num_classes).to(device)
        params = list(head.parameters())
        optimizer: torch.optim.Optimizer
        if opts.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
        steps_per_epoch = math.ceil(n / opts.batch_size)
        total_steps = opts.epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor(steps_per_epoch, total_steps))
        generator = torch.Generator().manual_seed(opts.seed)
        ignore = ignore_index if ignore_index is not None else -100
        epoch_mious: list[float] = []
        best_state: dict[str, Tensor] | None = None
        head.train()
        for epoch in range(opts.epochs):
            for idx in batches(n, opts.batch_size, generator):
                target = cache.masks[idx].to(device, torch.int64)
                if ignore_index is not None and not bool((target != ignore_index).any()):
                    scheduler.step()  # keep the schedule aligned with the data order
                    continue
                optimizer.zero_grad(set_to_none=True)
                if opts.logits_chunk_images is None:
                    logits = self._logits(head, cache.features[idx], cache.mask_hw, device)
                    F.cross_entropy(logits, target, ignore_index=ignore).backward()
                else:
                    # The batch's mean loss as a sum over chunks: same gradient, one chunk's logits alive.
                    valid = int((target != ignore).sum())
                    for part in range(0, len(idx), opts.logits_chunk_images):
                        rows = slice(part, part + opts.logits_chunk_images)
                        logits = self._logits(head, cache.features[idx[rows]], cache.mask_hw, device)
                        loss = F.cross_entropy(logits, target[rows], ignore_index=ignore, reduction="sum")
                        (loss / valid).backward()
                optimizer.step()
                scheduler.step()
            if selection is not None:
                conf = self._confusion(head.eval(), selection, num_classes, ignore_index, device, None)
                head.train()
                score = miou(conf, opts.absent_classes)[0]
                if not epoch_mious or score > max(epoch_mious):  # the first best epoch wins ties
                    best_state = copy.deepcopy(head.state_dict())
                epoch_mious.append(score)
            if progress is not None:
                progress("train", epoch + 1, opts.epochs)
        if best_state is not None:
            head.load_state_dict(best_state)
        return head.eval(), epoch_mious

    def _lr_factor(self, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
        """Multiplier of the peak learning rate after ``step`` optimisation steps (``LambdaLR``)."""
        opts = self.options
        if opts.schedule == "cosine":
            return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if opts.schedule == "step":
            return lambda step: opts.step_gamma ** ((step // steps_per_epoch) // opts.step_epochs)
        return lambda step: 1.0

    @staticmethod
    def _logits(head: nn.Module, feats: Tensor, mask_hw: tuple[int, int], device: torch.device | str) -> Tensor:
        """``(B, h, w, D)`` cached features -> ``(B, C, Hm, Wm)`` logits at mask resolution."""
        x = feats.to(device, torch.float32).permute(0, 3, 1, 2)
        logits = head(x)
        return F.interpolate(logits, size=mask_hw, mode="bilinear", align_corners=False)

    def _confusion(
        self,
        head: nn.Module,
        cache: DenseCache,
        num_classes: int,
        ignore_index: int | None,
        device: torch.device | str,
        progress: ProgressFn | None,
    ) -> Tensor:
        """Stream the val predictions into a ``(C, C)`` confusion matrix."""
        cm = ConfusionMatrix(num_classes, num_classes, ignore_index=ignore_index, device=device)
        chunks = batches(len(cache.features), self.options.batch_size)
        with torch.inference_mode():
            for i, idx in enumerate(chunks):
                for part in idx.split(self.options.logits_chunk_images or len(idx)):
                    pred = self._logits(head, cache.features[part], cache.mask_hw, device).argmax(dim=1)
                    cm.update(cache.masks[part].to(device, torch.int64), pred)
                if progress is not None:
                    progress("eval", i + 1, len(chunks))
        return cm.matrix.cpu()
