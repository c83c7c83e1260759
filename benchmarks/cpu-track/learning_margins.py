"""Margins for the learning tests: each method's quick-probe gain over several seeds, as the tests run it.

Usage::

    python benchmarks/cpu-track/learning_margins.py                  # every method, seeds 0-4 (~30 min)
    python benchmarks/cpu-track/learning_margins.py --methods paka --seeds 0 1

Runs :func:`dssl.testing.learning.learning_run` exactly as ``tests/learning/test_methods_learn.py`` does (one
torch thread, as the test suite's ``conftest.py`` sets; the method's steps and overrides from the test module)
for each seed, and prints each method's quick-probe gains (of its evaluated backbone and of its student), dead
terms and backbone gradient norm: the measurement behind the tests' :data:`MIN_STUDENT_GAIN`, :data:`IMPROVES`
and :data:`TOLERANCE`. Appends the table to ``benchmarks/RESULTS.md`` unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]


def test_module():
    """``tests/learning/test_methods_learn.py``, whose METHODS table the tests and this script share."""
    path = ROOT / "tests" / "learning" / "test_methods_learn.py"
    spec = importlib.util.spec_from_file_location("test_methods_learn", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    module = test_module()
    methods = module.METHODS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(methods), choices=list(methods))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    import torch
    from dssl.testing import learning_run

    torch.set_num_threads(1)
    lines = [
        "| method | steps | asserted | evaluated backbone: gains per seed | min | mean ± std | student: gains per seed "
        "| min | mean ± std | dead terms | min backbone grad norm |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def columns(gains: list[float]) -> str:
        spread = statistics.stdev(gains) if len(gains) > 1 else float("nan")
        return (
            f"{', '.join(f'{g:+.3f}' for g in gains)} | {min(gains):+.3f} | "
            f"{statistics.fmean(gains):+.3f} ± {spread:.3f}"
        )

    for label in args.methods:
        objective, sets, steps = methods[label]
        gains, student_gains, dead, grads = [], [], set(), []
        for seed in args.seeds:
            report = learning_run(objective, steps=steps, sets=sets, seed=seed)
            print(report.summary(), flush=True)
            gains.append(report.gain)
            student_gains.append(report.student_gain)
            dead |= set(report.dead_terms())
            grads.append(report.backbone_grad_norm)
        asserted = (
            f"student ≥ +{module.MIN_STUDENT_GAIN}" if label in module.IMPROVES else f"evaluated ≥ -{module.TOLERANCE}"
        )
        lines.append(
            f"| {label} | {steps} | {asserted} | {columns(gains)} | {columns(student_gains)} | "
            f"{', '.join(sorted(dead)) or 'none'} | {min(grads):.3g} |"
        )
    print("\n".join(lines))
    if not args.no_append:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from perf._report import append_section

        append_section(
            "learning margins: quick-probe gains of the learning tests over seeds",
            details=[
                "`dssl.testing.learning.learning_run` as `tests/learning/test_methods_learn.py` runs it (1 torch "
                "thread): the method post-trains the CPU track's warm start for the test's steps; gain = quick "
                "linear_seg probe (256 train / 128 val images, 10 epochs) after minus before, of the evaluated "
                "backbone (EMA teacher; STELLAR: its student) and of the student backbone.",
                f"Seeds {args.seeds}; the test runs seed 0 and asserts no dead term, a backbone gradient and the "
                "column `asserted` (tests/learning/test_methods_learn.py says why).",
            ],
            table="\n".join(lines),
            threads=1,
        )


if __name__ == "__main__":
    main()
