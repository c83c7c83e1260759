"""The run configuration of the tracking tests that train: 6 steps of 2 images at 32 px, k-means on 16/8 images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dssl import api

STEPS = 6


def write_tiny_config(folder: Path, uri: str, **tracking: Any) -> Path:
    """Resolve the tiny run logging to ``uri`` (``tracking`` adds tracking keys) and write it as ``run.yaml``."""
    config: dict[str, Any] = {
        "device": "cpu",
        "preset": "cpu",
        "seed": 1,
        "objective": {"name": "dino", "options": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}},
        "dataset": {"name": "embedded", "options": {"size": 32, "num_train": 5, "num_val": 4}},
        "eval_dataset": {"name": "embedded", "options": {"size": 32, "num_train": 16, "num_val": 8}},
        "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
        "evaluators": ["kmeans_seg"],
        "evaluator_options": {"kmeans_seg": {"seeds": [0], "n_init": 1}},
        "optim": {"steps": STEPS, "batch_size": 2, "warmup_steps": 1},
        "log_every": 1,
        "output_dir": str(folder / "runs"),
        "tracking": {"uri": uri, "experiment": "team"} | tracking,
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(api.resolve(config).to_dict(), sort_keys=False))
    return path
