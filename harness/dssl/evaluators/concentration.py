"""Semantic concentration of frozen patch features (diagnostic protocol ``concentration``, version 1).

Label-based diagnostics of methods §6.5 on the val split: every patch gets the majority class of its
pixels (patches whose majority is ``ignore_index`` or whose purity is below ``min_purity`` are dropped);
features are L2-normalised. Reported:

* ``intra_sim``: mean cosine similarity over all ordered pairs of *distinct* patches of the same class
  (across the whole val set), ``inter_sim``: over pairs of different classes, ``gap = intra - inter``;
* ``image_intra_sim``, ``image_inter_sim``, ``image_gap``: the same within each image, averaged over the
  images where the pair set is not empty;
* ``effective_rank``: RankMe, ``exp(H(σ / Σσ))`` of the singular values of a seeded sample of (raw,
  not normalised) patch features.

The pair means are exact, without enumerating pairs: with ``S_c`` the sum of class-``c`` unit vectors,
``Σ_{i≠j in c} cos = |S_c|² - n_c`` and ``Σ_{i in c, j not in c} cos = S_c · (S - S_c)``.

These are diagnostics, not benchmark scores: the result carries ``settings["diagnostic"] = True`` and
the evaluator class ``diagnostic = True``, so leaderboards can leave them out of rankings.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dssl.evaluators.base import DenseEvaluator, EvaluationInputs, Measurement, dataset_info
from dssl.evaluators.diagnostics_config import ConcentrationOptions
from dssl.evaluators.patch_labels import patch_class_fractions
from dssl.results import MetricValue

#: Images per majority-label computation (bounds the per-patch histograms to a few images).
_LABEL_CHUNK_IMAGES = 16


def patch_majority_labels(
    masks: Tensor, grid_hw: tuple[int, int], num_classes: int, ignore_index: int | None, min_purity: float
) -> Tensor:
    """Majority class per patch, ``-1`` for patches dominated by ignore pixels or below ``min_purity``.

    Args:
        masks: ``(B, H, W)`` integer masks.

    Returns:
        ``(B, h*w)`` int64 labels.
    """
    out = []
    # A few images at a time: the (b, N, C+1) fractions of the whole val set would be ~1 GB at ADE20K scale.
    for first in range(0, len(masks), _LABEL_CHUNK_IMAGES):
        labels = masks[first : first + _LABEL_CHUNK_IMAGES].to(torch.int64)
        if ignore_index is not None:
            labels = torch.where(labels == ignore_index, num_classes, labels)  # an extra "ignore" bin
        frac = patch_class_fractions(labels, grid_hw, num_classes + 1)  # (b, N, C+1)
        purity, label = frac.max(dim=2)
        out.append(torch.where((label == num_classes) | (purity < min_purity), -1, label))
    return torch.cat(out)


def class_sums(x: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class float64 sums of the rows of ``x`` and per-class row counts.

    Args:
        x: ``(n, D)`` features.
        labels: ``(n,)`` classes in ``[0, C)``.

    Returns:
        ``(sums (C, D) float64, counts (C,) float64)``; both add up over chunks of rows.
    """
    sums = torch.zeros(num_classes, x.shape[1], dtype=torch.float64).index_add_(0, labels, x.to(torch.float64))
    return sums, torch.bincount(labels, minlength=num_classes).to(torch.float64)


def pair_means(sums: Tensor, counts: Tensor) -> tuple[float, float]:
    """Mean same-class and different-class cosine from :func:`class_sums` of L2-normalised rows.

    Returns:
        ``(intra, inter)``, ``NaN`` where there is no such pair.
    """
    total = sums.sum(dim=0)
    intra_sum = float(((sums * sums).sum(dim=1) - counts).sum())
    intra_pairs = float((counts * (counts - 1)).sum())
    inter_sum = float((sums * (total[None] - sums)).sum())
    inter_pairs = float((counts * (counts.sum() - counts)).sum())
    intra = intra_sum / intra_pairs if intra_pairs > 0 else math.nan
    inter = inter_sum / inter_pairs if inter_pairs > 0 else math.nan
    return intra, inter


def pair_similarities(x: Tensor, labels: Tensor, num_classes: int) -> tuple[float, float]:
    """Mean cosine of same-class pairs (distinct patches) and of different-class pairs.

    Args:
        x: ``(n, D)`` L2-normalised features.
        labels: ``(n,)`` classes in ``[0, C)``.

    Returns:
        ``(intra, inter)``, ``NaN`` where there is no such pair.
    """
    return pair_means(*class_sums(x, labels, num_classes))


def effective_rank(x: Tensor) -> float:
    """RankMe: ``exp`` of the entropy of the normalised singular values of ``(n, D)`` features."""
    sigma = torch.linalg.svdvals(x.to(torch.float64))
    p = sigma / sigma.sum().clamp(min=1e-12) + 1e-12
    return float(torch.exp(-(p * p.log()).sum()))


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


class ConcentrationEvaluator(DenseEvaluator[ConcentrationOptions]):
    """Intra- vs inter-class patch similarity and effective rank (a diagnostic; see the module docstring).

    Example:
        >>> ev = ConcentrationEvaluator()  # doctest: +SKIP
        >>> ev.evaluate(features=fn, train=tr, val=va, dataset_name="voc").metrics["gap"]  # doctest: +SKIP
    """

    name: ClassVar[str] = "concentration"
    protocol: ClassVar[str] = "concentration"
    protocol_version: ClassVar[int] = 1
    diagnostic: ClassVar[bool] = True
    options_model: ClassVar[type[ConcentrationOptions]] = ConcentrationOptions

    def measure(self, inputs: EvaluationInputs) -> Measurement:
        """Measure concentration on the val patches (``train`` is unused)."""
        opts = self.options
        info = dataset_info(inputs.val, "val")
        # Diagnostics measure float32 features whatever the cache dtype option says.
        cache = self.extract(inputs, "val", info=info, dtype=torch.float32)
        c = info.num_classes
        labels = patch_majority_labels(cache.masks, cache.grid_hw, c, info.ignore_index, opts.min_purity)
        raw = cache.features.reshape(len(cache.features), -1, cache.dim)
        keep = labels >= 0
        if not bool(keep.any()):
            raise ValueError("no patch with a valid majority label; nothing to measure")
        # Streamed over images: the class sums add up chunk by chunk in the same row order as one pass, and
        # only one chunk of normalised features exists at a time (not a second copy of the whole val set).
        sums = torch.zeros(c, cache.dim, dtype=torch.float64)
        counts = torch.zeros(c, dtype=torch.float64)
        per_image = []
        for first in range(0, len(raw), opts.chunk_images):
            unit = F.normalize(raw[first : first + opts.chunk_images].to(torch.float32), dim=2)
            kept, kept_labels = keep[first : first + opts.chunk_images], labels[first : first + opts.chunk_images]
            chunk_sums, chunk_counts = class_sums(unit[kept], kept_labels[kept], c)
            sums += chunk_sums
            counts += chunk_counts
            per_image += [pair_similarities(unit[i][kept[i]], kept_labels[i][kept[i]], c) for i in range(len(unit))]
        intra, inter = pair_means(sums, counts)
        image_intra = _nanmean([p[0] for p in per_image])
        image_inter = _nanmean([p[1] for p in per_image])
        flat = raw.reshape(-1, cache.dim)
        generator = torch.Generator().manual_seed(opts.seed)
        if flat.shape[0] > opts.rank_patches:
            flat = flat[torch.randperm(flat.shape[0], generator=generator)[: opts.rank_patches]]
        metrics = {
            "intra_sim": MetricValue(value=intra, direction="higher"),
            "inter_sim": MetricValue(value=inter, direction="lower"),
            "gap": MetricValue(value=intra - inter, direction="higher"),
            "image_intra_sim": MetricValue(value=image_intra, direction="higher"),
            "image_inter_sim": MetricValue(value=image_inter, direction="lower"),
            "image_gap": MetricValue(value=image_intra - image_inter, direction="higher"),
            "effective_rank": MetricValue(value=effective_rank(flat), direction="higher"),
        }
        settings = {
            "similarity": "cosine",
            "pairs": "ordered pairs of distinct patches",
            "patch_label": "majority of pixels",
            "min_purity": opts.min_purity,
            "rank_patches": int(flat.shape[0]),
            "rank_features": "raw (not normalised)",
            "seed": opts.seed,
            "labelled_patches": int(keep.sum()),
            "num_classes": c,
            "ignore_index": info.ignore_index,
            **self.feature_settings(cache),
            "val_images": len(cache.features),
        }
        return metrics, settings
