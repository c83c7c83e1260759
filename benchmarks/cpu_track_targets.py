"""The CPU track's targets, measured: warm start vs random init vs supervised, and what each method adds.

Usage::

    dssl grid benchmarks/cpu-compare.yaml             # first: the comparison grid (≤ 60 min)
    python benchmarks/cpu_track_targets.py            # then: read its runs and the measured ceilings, report
    python benchmarks/cpu_track_targets.py --warm-starts benchmarks/cpu-track/warm-start-seeds/seed*.json
                                                      # also: warm-start runs, one per seed (these: the committed
                                                      # recipe over seeds 0-2, their provenance files)

Reads the finished runs of the ``cpu-compare`` grid (``--grid``, experiment ``grid-cpu-compare`` of the tracking
store) as the grid file resolves its cells today (:func:`dssl.api.grid_leaderboard`: runs of earlier settings,
e.g. before a preset changed, do not count) — every method post-trained from the warm start, the warm start
itself and random init, 3 seeds each, scored by ``linear_seg@1`` — and trains the supervised ceiling
(``benchmarks/supervised_ceiling.py``: the same backbone from random init with the masks as labels) for the
grid's steps and each seed. It prints, with mean ± std over seeds:

1. the DINO representation (the warm start, and the main job = the warm start + DINO continued) against
   random init: the gain in points, in units of the seed std, and as a share of the gap between random init
   and the supervised ceiling for the same number of steps — the representation's own: the warm start's
   steps, and for the main job the warm start's plus its own (and at ``--ceiling-steps`` too). Where no
   ceiling was measured at exactly that count, the one measured at the nearest smaller count stands in as
   a lower bound (the measured ceilings grow with steps), which makes the share an upper bound: enough to
   say "not met" when even that stays under 25 %, not to say "met" (such a row says "not known");
2. the main job (``dino``) against its start: gain in units of the seed std;
3. every method against its start and against DINO continued;
4. with ``--warm-starts``: the representations of ``benchmarks/warm_start.py`` runs (their provenance ``.json``,
   one per seed, e.g. a longer schedule than the committed one) against the random init each started from (its
   curve's step 0), and their share of the supervised gap at their own number of steps.

Supervised ceilings already measured with ``benchmarks/supervised_ceiling.py --output`` (same settings:
``--set backbone.init=random --set "evaluators=[linear_seg]" --set "baselines=[]"``) are read from
``--ceiling-rows`` (default: the committed ``benchmarks/cpu-track/supervised-ceilings.jsonl``, seeds 0-2 at
200, 2000 and 6000 steps) instead of being trained again; a step count none of them covers, or below all of
them, is trained (seeds 0-2: about 75 s per seed at 200 steps, 33 min at 2000 on 2 CPU cores).

The seed std of a comparison is the larger of the two rows' std over seeds (each row's seeds vary the data
order, augmentations, new heads and the probes; the warm start and random init rows vary only the probes and
the random-init weights). Appends the table to ``benchmarks/RESULTS.md`` unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from perf._report import shown_path  # noqa: E402

METRIC = "linear_seg/miou"
METHODS = ("dino", "cotap", "cotap+oaf", "paka", "udi", "stellar")
CEILING_ROWS = ROOT / "benchmarks" / "cpu-track" / "supervised-ceilings.jsonl"
GRID = ROOT / "benchmarks" / "cpu-compare.yaml"


def supervised_ceiling(seeds: list[int], steps: int, lr: float) -> list[float]:
    """The main job's backbone trained with the masks as labels for ``steps`` steps, per seed: linear_seg mIoU."""
    from dssl.api import build, evaluate_built, resolve
    from rich.console import Console
    from supervised_ceiling import train_supervised

    values = []
    for seed in seeds:
        config = resolve(
            objective="dino",
            seed=seed,
            steps=steps,
            sets=["backbone.init=random", "tracking.enabled=false", "evaluators=[linear_seg]", "baselines=[]"],
        )
        built = build(config)
        train_supervised(built, lr=lr, seed=seed, log_every=max(steps // 4, 1))
        results = evaluate_built(built, backbone=built.objective.backbone, console=Console(quiet=True))
        values.append(next(r.metrics["miou"].value for r in results if r.evaluator == "linear_seg"))
    return values


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=GRID, help="the comparison grid's file (default: %(default)s)")
    parser.add_argument("--experiment", default=None, help="the grid's MLflow experiment (default: its file's)")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    parser.add_argument("--ceiling-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ceiling-steps", type=int, nargs="*", default=[], help="also at these step counts")
    parser.add_argument("--lr", type=float, default=5e-4, help="supervised AdamW learning rate")
    parser.add_argument(
        "--warm-starts", type=Path, nargs="*", default=[], metavar="JSON",
        help="provenance files of benchmarks/warm_start.py runs, one per seed, same schedule",
    )  # fmt: skip
    parser.add_argument(
        "--ceiling-rows", type=Path, default=CEILING_ROWS, metavar="JSONL",
        help="supervised ceilings measured by benchmarks/supervised_ceiling.py --output ('' to train them all)",
    )  # fmt: skip
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    warm_starts = _load_warm_starts(args.warm_starts)
    measured = _load_ceiling_rows(args.ceiling_rows) if str(args.ceiling_rows) not in ("", ".") else {}

    from dssl.api import grid_leaderboard, resolve, start_steps

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
    board = grid_leaderboard(args.grid, tracking_uri=uri, experiment=args.experiment, metric=METRIC)
    rows = {r.objective: r for r in board}
    needed = [*METHODS, "warm start", "random init"]
    missing = [m for m in needed if m not in rows]
    if missing:
        sys.exit(
            f"{args.grid} in {uri} has no finished {METRIC} runs for: {', '.join(missing)} as the grid resolves its "
            f"cells today (run the grid: dssl grid {args.grid})"
        )
    per_seed = _per_seed_values(uri, rows)
    main_job = resolve(objective="dino", sets=["tracking.enabled=false"])
    steps = main_job.optim.steps
    trained: dict[int, list[float]] = {}

    def ceiling_at(at_steps: int) -> list[float]:  # each step count trained at most once, none if measured
        if at_steps in measured:
            return measured[at_steps]
        if at_steps not in trained:
            trained[at_steps] = supervised_ceiling(args.ceiling_seeds, at_steps, args.lr)
        return trained[at_steps]

    def ceiling_for(at_steps: int) -> Ceiling:
        below = [n for n in measured if n < at_steps]
        if at_steps in measured or not below:
            return Ceiling(at_steps, ceiling_at(at_steps))
        return Ceiling(max(below), measured[max(below)])

    warm_steps = start_steps(backbone=main_job.backbone.name, init=main_job.backbone.init)
    if warm_steps is None:
        sys.exit(f"the main job starts from {main_job.backbone.init}, whose training steps are not recorded")
    totals = {"warm start": warm_steps, "dino": warm_steps + steps}
    ceilings = {
        label: [ceiling_for(total), *(Ceiling(n, ceiling_at(n)) for n in args.ceiling_steps if n != total)]
        for label, total in totals.items()
    }
    lines = _report(per_seed, ceilings, totals, steps)
    if warm_starts:
        lines += _warm_start_report(warm_starts, ceiling_for(warm_starts[0]["steps"]))
    print("\n".join(lines))
    if not args.no_append:
        from perf._report import append_section

        append_section(
            "CPU track targets (issue 16)",
            details=[
                f"Runs of the grid's current cells (`dssl grid {shown_path(args.grid)}`), {METRIC} "
                f"(protocol linear_seg@1) on 256 embedded val images at 64 px; supervised ceilings "
                + (f"at {sorted(measured)} steps read from `{args.ceiling_rows}`, the others " if measured else "")
                + f"trained here (`benchmarks/supervised_ceiling.py` logic, lr {args.lr:g}, "
                f"seeds {args.ceiling_seeds}).",
                "seed std of a comparison: the larger of the two rows' std over seeds.",
            ],
            table="\n".join(lines),
        )


class Ceiling(NamedTuple):
    """Supervised linear_seg mIoU per seed, measured at ``steps`` steps."""

    steps: int
    values: list[float]


def _share_row(label: str, gain: float, start: float, steps: int, ceiling: Ceiling) -> str:
    """Target 1's share row: ``gain`` over ``start`` against the gap to the supervised ceiling for ``steps``."""
    top, top_std = stats(ceiling.values)
    share = gain / (top - start)
    head = f"| {label}: share of the supervised gap at {steps} steps | supervised {top:.2f} ± {top_std:.2f}"
    if ceiling.steps == steps:
        return f"{head} ({len(ceiling.values)} seeds) | {share:.0%} of {top - start:.2f} | — | ≥ 25 % | " + (
            "yes |" if share >= 0.25 else "no |"
        )
    # A ceiling of fewer steps is a lower bound (measured ceilings grow with steps): the share an upper bound.
    return (
        f"{head} at {ceiling.steps} steps, a lower bound ({len(ceiling.values)} seeds) | ≤ {share:.0%} of "
        f"{top - start:.2f} | — | ≥ 25 % | " + ("no |" if share < 0.25 else "not known (measure the ceiling) |")
    )


def _recipe_options(run: dict[str, Any]) -> str:
    """A warm-start run's command without the options that do not change what it trains (seed, threads)."""
    return re.sub(r"\s+--(?:seed|threads)\s+\S+", "", run["recipe"]).strip()


def _load_warm_starts(paths: list[Path]) -> list[dict[str, Any]]:
    """warm_start.py provenance files, checked to be one recipe and schedule over distinct seeds."""
    runs = [json.loads(path.read_text()) for path in paths]
    if len({run["steps"] for run in runs}) > 1:  # the fingerprint names the seed too: it differs by design
        sys.exit("--warm-starts: the files mix schedules (their numbers of steps differ)")
    recipes = sorted({_recipe_options(run) for run in runs})
    if len(recipes) > 1:
        sys.exit("--warm-starts: the files mix recipes (beyond --seed and --threads): " + " / ".join(recipes))
    if len({run["seed"] for run in runs}) != len(runs):
        sys.exit("--warm-starts: give one file per seed")
    for path, run in zip(paths, runs, strict=True):
        curve = run["learning_curve"]
        ends = (curve[0], curve[-1])
        if ends[0]["step"] != 0 or ends[1]["step"] != run["steps"] or any(METRIC not in end for end in ends):
            sys.exit(f"--warm-starts: {path} has no {METRIC} at step 0 and at its last step")
    return sorted(runs, key=lambda run: run["seed"])


def _load_ceiling_rows(path: Path) -> dict[int, list[float]]:
    """Supervised linear_seg mIoU per step count (seed order) from supervised_ceiling.py --output."""
    by_steps: dict[int, dict[int, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_steps.setdefault(int(row["steps"]), {})[int(row["seed"])] = float(row[f"supervised/{METRIC}"])
    return {steps: [values[seed] for seed in sorted(values)] for steps, values in by_steps.items()}


def _warm_start_report(runs: list[dict[str, Any]], ceiling: Ceiling) -> list[str]:
    """Target 1 for warm_start.py runs: each run's final representation against the random init it started from."""
    steps, seeds = runs[0]["steps"], ", ".join(str(run["seed"]) for run in runs)
    starts = [run["learning_curve"][0][METRIC] for run in runs]
    finals = [run["learning_curve"][-1][METRIC] for run in runs]
    (start, start_std), (final, final_std) = stats(starts), stats(finals)
    gain, noise = final - start, max(start_std, final_std, 1e-9)
    beats = gain >= 3 and gain >= 4 * noise
    overrides = _recipe_options(runs[0]).partition("warm_start.py")[2].strip()
    label = f"warm_start.py, {steps} steps (seeds {seeds}; `{overrides}`)"
    return [
        f"| {label} vs its random init | {final:.2f} ± {final_std:.2f} vs {start:.2f} ± {start_std:.2f} | "
        f"{gain:+.2f} | {gain / noise:.1f}× | ≥ 3 points and ≥ 4× | {'yes' if beats else 'no'} |",
        _share_row(label, gain, start, steps, ceiling),
    ]


def _per_seed_values(uri: str, rows: dict[str, Any]) -> dict[str, list[float]]:
    """Each row's metric value per seed, in seed order (from its runs)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    values = {}
    for label, row in rows.items():
        runs = [client.get_run(run_id) for run_id in row.run_ids]
        ordered = sorted(runs, key=lambda run: int(run.data.params.get("seed", 0)))
        values[label] = [float(run.data.metrics[METRIC]) for run in ordered]
    return values


def _report(
    per_seed: dict[str, list[float]], ceilings: dict[str, list[Ceiling]], totals: dict[str, int], steps: int
) -> list[str]:
    """The targets table; ``ceilings`` and ``totals``: per DINO representation, its ceilings and total steps."""

    def row(label: str) -> tuple[float, float]:
        return stats(per_seed[label])

    def fmt(label: str) -> str:
        mean, std = row(label)
        return f"{mean:.2f} ± {std:.2f}"

    random_mean, random_std = row("random init")
    out = [
        "| comparison | values (mean ± std over seeds) | gain | gain / seed std | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for representation in ("warm start", "dino"):
        mean, std = row(representation)
        gain, noise = mean - random_mean, max(std, random_std, 1e-9)
        out.append(
            f"| {representation} vs random init | {fmt(representation)} vs {fmt('random init')} | {gain:+.2f} | "
            f"{gain / noise:.1f}× | ≥ 3 points and ≥ 4× | {'yes' if gain >= 3 and gain >= 4 * noise else 'no'} |"
        )
        for number, ceiling in enumerate(ceilings[representation]):
            at_steps = totals[representation] if number == 0 else ceiling.steps  # the others: --ceiling-steps
            out.append(_share_row(representation, gain, random_mean, at_steps, ceiling))
    start_mean, start_std = row("warm start")
    dino_mean, dino_std = row("dino")
    for method in METHODS:
        mean, std = row(method)
        gain, noise = mean - start_mean, max(std, start_std, 1e-9)
        versus = mean - dino_mean
        out.append(
            f"| {method} ({steps} steps) vs its start | {fmt(method)} vs {fmt('warm start')} | {gain:+.2f} | "
            f"{gain / noise:.1f}× | ≥ 3× | {'yes' if gain >= 3 * noise else 'no'} |"
        )
        if method != "dino":
            out.append(f"| {method} vs DINO continued | {fmt(method)} vs {fmt('dino')} | {versus:+.2f} | "
                       f"{versus / max(std, dino_std, 1e-9):.1f}× | — | — |")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
