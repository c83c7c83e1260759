"""Method comparison on the embedded data: every first-party objective, same steps, same evaluators.

Usage::

    python benchmarks/method_comparison.py                     # cpu preset steps, seed 0, linear_seg + knn
    python benchmarks/method_comparison.py --steps 100 --no-append
    python benchmarks/method_comparison.py --only from_random  # DINO vs UDI vs STELLAR only

Two families of runs, as the method issues ask for them:

* ``from_random``: DINO, UDI and STELLAR trained for ``--steps`` steps from the same random init (same
  seed), plus the untrained backbone itself. STELLAR is evaluated twice from one training run: on its
  dense patch tokens and on its low-rank map ``L·S`` (``objective.options.eval_features``).
* ``from_dino``: the DINO backbone of ``from_random`` (its teacher) is the common start; DINO continued,
  CoTAP, CoTAP + OAF and PaKA each train ``--steps`` more steps from it (``--init <checkpoint>``),
  plus the start itself untrained.

Every run goes through the Python API (``dssl.api.build`` / ``train`` / ``evaluate_built``): the objective's own
preset block of this machine's preset, the same evaluators with the same options and the same
evaluation data, tracking off. Numbers of different protocols are never put in one column; each
column is ``evaluator@version metric``. The table is printed and, unless ``--no-append``, appended
to ``benchmarks/RESULTS.md`` with the machine, command and settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from machine import cpu_model  # benchmarks/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
#: The one number per evaluator that the table shows (k-NN: DINO's k = 20).
HEADLINE_METRICS = ("miou", "top1_k20", "top1")


@dataclass
class Row:
    """One evaluated backbone of the comparison."""

    family: str
    label: str
    init: str
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    protocols: dict[str, str] = field(default_factory=dict)
    final_loss: float = float("nan")
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


@dataclass(frozen=True)
class Method:
    """An objective with the extra ``--set`` overrides that make a variant of it (e.g. CoTAP + OAF)."""

    label: str
    objective: str
    sets: tuple[str, ...] = ()
    eval_variants: tuple[tuple[str, tuple[str, str] | None], ...] = (("", None),)


FROM_RANDOM = (
    Method("dino", "dino"),
    Method("udi", "udi"),
    Method(
        "stellar",
        "stellar",
        eval_variants=(("dense", ("eval_features", "dense")), ("low-rank", ("eval_features", "lowrank"))),
    ),
)
FROM_DINO = (
    Method("dino continued", "dino"),
    Method("cotap", "cotap"),
    Method("cotap + oaf", "cotap", sets=("objective.options.filter=oaf",)),
    Method("paka", "paka"),
)


def _record(row: Row, evaluations: list[Any]) -> None:
    for evaluation in evaluations:
        for name, value in evaluation.metrics.items():
            if name in HEADLINE_METRICS:
                key = f"{evaluation.evaluator}/{name}"
                row.metrics[key] = value.value
                row.protocols[key] = f"{evaluation.protocol}@{evaluation.protocol_version}"
        row.eval_seconds += evaluation.seconds or 0.0


def evaluate_untrained(args: argparse.Namespace, family: str, label: str, init: str, tmp: Path) -> Row:
    """The common start of a family, evaluated without training (DINO's objective wraps it)."""
    from dssl.api import build, evaluate_built

    config = _resolve(args, "dino", (), init, tmp)
    row = Row(family, label, init, 0)
    _record(row, evaluate_built(build(config), console=_console(args)))
    return row


def train_and_evaluate(
    args: argparse.Namespace, family: str, method: Method, init: str, tmp: Path
) -> tuple[list[Row], Path]:
    """Train ``method`` from ``init`` and evaluate each of its evaluation variants."""
    from dssl.api import build, evaluate_built, save_backbone, train

    config = _resolve(args, method.objective, method.sets, init, tmp)
    built = build(config)
    console = _console(args)
    summary = train(built, console=console)
    checkpoint = save_backbone(built, tmp / method.label.replace(" ", "_") / "backbone.pt")
    rows = []
    for suffix, option in method.eval_variants:
        if option is not None:
            # eval_backbone() reads the option on every call, so one trained objective serves both variants.
            setattr(built.objective.options, option[0], option[1])
        label = f"{method.label} ({suffix})" if suffix else method.label
        row = Row(family, label, init, config.optim.steps)
        row.final_loss = float(summary.final_metrics.get("loss", float("nan")))
        row.train_seconds = summary.seconds
        _record(row, evaluate_built(built, console=console))
        rows.append(row)
    return rows, checkpoint


def _console(args: argparse.Namespace) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=args.quiet)


def _resolve(args: argparse.Namespace, objective: str, sets: tuple[str, ...], init: str, tmp: Path) -> Any:
    from dssl.api import resolve

    overrides: dict[str, Any] = {"objective": objective, "backbone": args.backbone, "seed": args.seed, "init": init}
    if args.steps is not None:
        overrides["steps"] = args.steps
    all_sets = [
        *sets,
        *args.set,
        "tracking.enabled=false",
        f"output_dir={tmp}",
        "evaluators=[" + ",".join(args.eval) + "]",
    ]
    return resolve(sets=all_sets, **overrides)


def table(rows: list[Row]) -> list[str]:
    keys = sorted({k for r in rows for k in r.metrics})
    protocols = {k: next(r.protocols[k] for r in rows if k in r.protocols) for k in keys}
    head = "| family | backbone | steps | " + " | ".join(f"{protocols[k]} {k.split('/')[1]}" for k in keys)
    head += " | final loss | train s | eval s |"
    out = [head, "|" + "---|" * (3 + len(keys) + 3)]
    for r in rows:
        cells = [r.family, r.label, str(r.steps)]
        cells += [f"{r.metrics[k]:.2f}" if k in r.metrics else "—" for k in keys]
        cells += [f"{r.final_loss:.3f}" if r.steps else "—", f"{r.train_seconds:.0f}", f"{r.eval_seconds:.0f}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_t16")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", nargs="+", default=["linear_seg", "knn"], help="evaluators (default: linear_seg knn)")
    parser.add_argument("--only", choices=["from_random", "from_dino"], help="one family only")
    parser.add_argument("--methods", nargs="+", metavar="LABEL", help="only these method labels (and the start)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to append to")
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args()

    import torch

    rows: list[Row] = []
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dssl-compare-") as tmp_name:
        tmp = Path(tmp_name)
        rows.append(evaluate_untrained(args, "from_random", "random init (untrained)", "random", tmp))
        dino_rows, dino_checkpoint = train_and_evaluate(args, "from_random", FROM_RANDOM[0], "random", tmp)
        rows += dino_rows
        if args.only != "from_dino":
            for method in FROM_RANDOM[1:]:
                if args.methods is None or method.label in args.methods:
                    rows += train_and_evaluate(args, "from_random", method, "random", tmp)[0]
        if args.only != "from_random":
            start = str(dino_checkpoint)
            rows.append(Row("from_dino", "dino start (untrained)", start, 0, *_copy(dino_rows[0])))
            for method in FROM_DINO:
                if args.methods is None or method.label in args.methods:
                    rows += train_and_evaluate(args, "from_dino", method, start, tmp)[0]
        print("\n".join(table(rows)), flush=True)
        config = _resolve(args, "dino", (), "random", tmp)
    wall = time.perf_counter() - started
    if args.no_append:
        return
    command = "python benchmarks/method_comparison.py " + shlex.join(sys.argv[1:])
    c = config
    section = [
        "",
        f"## method comparison on embedded — {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), Python {platform.python_version()}; load 1-min {load_before:.2f} at start; {wall / 60:.0f} min",
        f"- command: `{command}`",
        f"- every run: preset `{c.preset}`, backbone `{c.backbone.name}`, seed {c.seed}, {c.optim.steps} steps, "
        f"batch {c.optim.batch_size}, each objective's own preset block; evaluators {', '.join(c.evaluators)} on "
        f"`{(c.eval_dataset or c.dataset).name}` {dict((c.eval_dataset or c.dataset).options)}",
        "- from_random: the same random init for every method; from_dino: every method starts from the DINO "
        "teacher of the from_random row (`--init <its backbone.pt>`) and trains the same number of steps more",
        "- the untrained rows are the starting backbones; a method that does not beat its family's start has not "
        "learned anything a probe can use at this scale",
        "",
        *table(rows),
        "",
    ]
    with args.results.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(section))
    print(f"appended to {args.results}")


def _copy(row: Row) -> tuple[dict[str, float], dict[str, str], float, float, float]:
    """The from_dino start is the from_random DINO result itself: its metrics, without its training cost."""
    return dict(row.metrics), dict(row.protocols), float("nan"), 0.0, 0.0


if __name__ == "__main__":
    main()
