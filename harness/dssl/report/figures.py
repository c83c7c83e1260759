"""The report's figures, drawn with matplotlib's Agg backend (no display needed) and saved as PNG."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dssl.report.runs import MetricGroup

#: Dots per inch of every saved figure.
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def metric_bars(sections: Mapping[tuple[str, str], Sequence[MetricGroup]], path: Path) -> Path:
    """One bar chart per (protocol id, metric): mean over seeds with ±1 std error bars.

    Args:
        sections: ``{(protocol id, metric key): groups}`` from :func:`dssl.report.runs.metric_groups`.
        path: PNG to write.
    """
    fig, axes = _panels(len(sections), max_cols=3, width=5.0)
    for ax, ((protocol, key), groups) in zip(axes.flat, sections.items(), strict=False):
        positions = np.arange(len(groups))
        ax.bar(
            positions,
            [g.mean for g in groups],
            yerr=[g.std for g in groups],
            capsize=4,
            color=[f"C{i % 10}" for i in range(len(groups))],
        )
        ax.set_xticks(positions, [g.label for g in groups], fontsize=7)
        ax.set_title(f"{key}  ({protocol})", fontsize=9)
        for x, g in zip(positions, groups, strict=True):
            ax.annotate(f"{g.mean:.2f}\nn={g.n}", (x, g.mean), ha="center", va="bottom", fontsize=6)
    return _save_panels(fig, axes, used=len(sections), empty="no evaluation metrics", path=path)


def training_curves(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: Path) -> Path:
    """Training metrics against the step, one panel per metric, one line per run.

    Args:
        curves: ``{metric: {run label: [(step, value), ...]}}``.
        path: PNG to write.
    """
    fig, axes = _panels(len(curves), max_cols=2, width=6.0)
    for ax, (metric, lines) in zip(axes.flat, curves.items(), strict=False):
        for label, points in lines.items():
            steps, values = zip(*sorted(points), strict=True) if points else ((), ())
            ax.plot(steps, values, label=label, linewidth=1.2)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    return _save_panels(fig, axes, used=len(curves), empty="no training metrics", path=path)


def image_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path: Path, *, cell: float = 1.6) -> Path:
    """Images in a grid: one labelled row per entry, e.g. the inputs then one row per backbone.

    Args:
        rows: ``(row label, images)``; every image is ``(H, W, 3)`` float in [0, 1] or uint8.
        path: PNG to write.
        cell: Side of one image in inches.
    """
    plt = _pyplot()
    n_rows = len(rows)
    n_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols + 1.2, cell * n_rows), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return _save(fig, path)


def _panels(count: int, *, max_cols: int, width: float) -> tuple[Any, Any]:
    """A figure with a grid of at least one panel for ``count`` panels, ``max_cols`` per row."""
    n = max(1, count)
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    return _pyplot().subplots(rows, cols, figsize=(width * cols, 3.6 * rows), squeeze=False)


def _save_panels(fig: Any, axes: Any, *, used: int, empty: str, path: Path) -> Path:
    """Blank the panels after the first ``used`` (saying ``empty`` when none is used) and save."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    if not used:
        axes.flat[0].text(0.5, 0.5, empty, ha="center", va="center")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
