"""Benchmark runs: build the components, train, checkpoint, evaluate frozen features, report, log.

One module per job:

* :mod:`dssl.runner.build` — a configuration's components, built and validated before anything is logged
  (:class:`BuiltRun`);
* :mod:`dssl.runner.training` — the engine's loader and trainer for a built run, checkpoints, the profiler;
* :mod:`dssl.runner.evaluation` — frozen features through the run's evaluators, and its baselines;
* :mod:`dssl.runner.report` — the results table;
* :mod:`dssl.runner.tracking` — params, tags, descriptions and dataset inputs of a run;
* :mod:`dssl.runner.execute` — one run from start to end (``dssl bench``, ``dssl eval``);
* :mod:`dssl.runner.resume` — an interrupted run continued (``dssl bench --resume``).

The public part, for scripts that evaluate along the way (learning curves, baselines), is in ``__all__``; the
Python API :mod:`dssl.api` covers the rest (``build``, ``train``, ``evaluate_built``, ``run``). The other names
re-exported here are the harness's own.
"""

from __future__ import annotations

# Every name below is importable from here (the harness and its tests use them); ``__all__`` is the public part.
from dssl.runner.build import (  # noqa: F401
    BuiltRun,
    build_backbone,
    build_eval_datasets,
    build_eval_run,
    build_run,
    check_views_fit,
    default_eval_label,
    resolve_data_root,
    resolve_device,
    resolve_init,
)
from dssl.runner.evaluation import evaluate_backbone, evaluate_baselines, image_feature_method  # noqa: F401
from dssl.runner.execute import run_bench, run_eval  # noqa: F401
from dssl.runner.report import print_results  # noqa: F401
from dssl.runner.resume import ResumePoint, find_resume_point, resume_bench  # noqa: F401
from dssl.runner.tracking import BAD_IMAGES_FILE, RUN_INFO_FILE, eval_params, run_params, tracker_method  # noqa: F401
from dssl.runner.training import make_trainer, profile_bench, training_batches  # noqa: F401

__all__ = ["BuiltRun", "evaluate_backbone", "evaluate_baselines", "make_trainer", "training_batches"]
