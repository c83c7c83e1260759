"""The tiny run of the tests that train end to end: 6 steps of 2 images at 32 px, k-means on 16/8 images.

Import it as ``from tests.tiny_run import ...`` (the repository root is on ``sys.path`` through its conftest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from dssl import api

STEPS = 6


def tiny_run_config(folder: Path, *, experiment: str = "tiny", **changes: Any) -> dict[str, Any]:
    """The resolved tiny run (checkpoints every 2 steps) in ``folder``; ``changes`` replace top-level keys.

    Args:
        folder: Holds ``runs/`` and the SQLite store ``mlflow.db`` (unless ``tracking`` is changed).
        experiment: MLflow experiment of the SQLite store.
        changes: Top-level keys that replace the tiny run's (e.g. ``tracking={"uri": ...}``).
    """
    config: dict[str, Any] = {
        "device": "cpu",
        "preset": "cpu",
        "seed": 3,
        "objective": {"name": "dino", "options": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}},
        "backbone": {"name": "vit_t16"},
        "dataset": {"name": "embedded", "options": {"size": 32, "num_train": 5, "num_val": 4}},
        "eval_dataset": {"name": "embedded", "options": {"size": 32, "num_train": 16, "num_val": 8}},
        "augmentation": {"options": {"global_size": 32, "local_size": 16, "n_local": 2}},
        "evaluators": ["kmeans_seg"],
        "evaluator_options": {"kmeans_seg": {"seeds": [0], "n_init": 1}},
        "optim": {"steps": STEPS, "batch_size": 2, "warmup_steps": 1, "num_workers": 0},
        "baselines": [],
        "log_every": 1,
        "checkpoint_every": 2,
        "output_dir": str(folder / "runs"),
        "tracking": {"uri": f"sqlite:///{folder}/mlflow.db", "experiment": experiment},
    }
    return api.resolve(config | changes).to_dict()


def write_tiny_run(folder: Path, **changes: Any) -> Path:
    """:func:`tiny_run_config` written as ``folder/run.yaml`` (for ``dssl bench --config``)."""
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_run_config(folder, **changes), sort_keys=False))
    return path
