"""The grid leaderboard: the cells' finished runs aggregated over seeds, as tables, Markdown and JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dssl.grid.plan import GridOutcome, PlannedCell, store_client
from dssl.grid.spec import GridSpec
from dssl.tracking.leaderboard import LeaderboardRow

if TYPE_CHECKING:
    from rich.console import Console

#: Artifacts of the parent run.
LEADERBOARD_MD = "grid_leaderboard.md"
LEADERBOARD_JSON = "grid_leaderboard.json"


def grid_rows(cells: Sequence[PlannedCell], *, tracking_uri: str) -> list[LeaderboardRow]:
    """Aggregate the evaluation metrics of the cells' finished runs over seeds.

    Rows are grouped like the leaderboard's (:func:`dssl.tracking.leaderboard.aggregate_runs`: runs that differ
    only in the seed), named by the cells' labels (objective, backbone and dataset labels), so that numbers of
    two protocol versions never share a column and cells whose settings differ (a per-seed override) never
    share a row. Only the run of each cell counts.
    """
    from dssl.config import comparable_settings
    from dssl.tracking.leaderboard import aggregate_runs

    done = {c.run_id: c for c in cells if c.status in ("finished", "skipped", "done") and c.run_id}
    if not done:
        return []
    client = store_client(tracking_uri, create=False)
    if client is None:
        return []

    def labels(run: Any) -> tuple[str, str, str]:
        return _label_of(done[run.info.run_id])

    def settings(run: Any, evaluator: str) -> dict[str, Any]:
        item = done[run.info.run_id]
        return comparable_settings(item.config.to_dict(), evaluator, trained=item.cell.checkpoint is None)

    return aggregate_runs([client.get_run(run_id) for run_id in done], identity=labels, settings=settings)


def _label_of(item: PlannedCell) -> tuple[str, str, str]:
    """The grid row of a cell: its objective (or checkpoint), backbone and dataset labels."""
    return item.cell.objective.key, item.cell.backbone.key, item.cell.dataset.key


def _row_labels(outcome: GridOutcome) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(_label_of(item) for item in outcome.cells))


def _natural(text: str) -> list[Any]:
    """Sort key that orders ``top1_k20`` before ``top1_k100``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass
class _Table:
    """One block of the grid leaderboard: one evaluator under one protocol id on one dataset."""

    title: str
    header: list[str]
    body: list[list[str]]


def _tables(outcome: GridOutcome) -> list[_Table]:
    """The grid leaderboard: per (evaluator, protocol id, dataset, absent-class convention), a row per cell
    label (one per variant when cells of a label differ in more than the seed) and a column per metric.

    A column is one metric under one protocol id, so numbers of two protocol versions never share one.
    """
    groups: dict[tuple[str, str, str, str], list[LeaderboardRow]] = {}
    for row in outcome.rows:
        key = (row.metric.partition("/")[0], row.protocol, row.dataset, row.absent_classes or "")
        groups.setdefault(key, []).append(row)
    tables = []
    for (evaluator, protocol, dataset, absent), rows in sorted(groups.items()):
        metrics: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: _natural(r.metric)):
            metrics.setdefault(row.metric, "↑" if row.direction == "higher" else "↓")
        header = ["objective", "backbone", "dataset", "seeds"]
        header += [f"{metric.partition('/')[2] or metric} {arrow}" for metric, arrow in metrics.items()]
        body = []
        for label in _row_labels(outcome):
            items = [c for c in outcome.cells if _label_of(c) == label]
            ok = sum(c.status in ("finished", "skipped", "done") for c in items)
            failed = sum(c.status == "failed" for c in items)
            seeds = f"{ok}/{len(items)}" + (f" ({failed} failed)" if failed else "")
            mine = [r for r in rows if (r.objective, r.backbone, r.train_dataset or "") == label]
            variants: dict[str, dict[str, LeaderboardRow]] = {}
            for row in mine:
                variants.setdefault(row.row_key or "", {})[row.metric] = row
            for by_metric in variants.values() or [{}]:
                variant = next((r.variant for r in by_metric.values() if r.variant), None)
                objective = label[0] + (" (eval only)" if items[0].label is not None else "")
                objective += f" [{variant}]" if variant else ""
                line = [objective, label[1], label[2], seeds]
                for metric in metrics:
                    row = by_metric.get(metric)
                    if row is None:
                        line.append("—")
                        continue
                    text = row.value_text if math.isfinite(row.mean) else "nan"
                    line.append(text + (f" (n={row.n_seeds})" if row.n_seeds != ok else ""))
                body.append(line)
        title = f"{evaluator} — {protocol} on {dataset}" + (f" (absent classes: {absent})" if absent else "")
        tables.append(_Table(title=title, header=header, body=body))
    return tables


def render_grid_markdown(outcome: GridOutcome) -> str:
    """The grid leaderboard as Markdown: a table per evaluator and protocol, then the per-metric rankings."""
    from dssl.tracking.leaderboard import render

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# Grid {outcome.name}", "", "_mean ± std over seeds; seeds: finished/total_"]
    for table in _tables(outcome):
        lines += ["", f"## {cell(table.title)}", ""]
        lines.append("| " + " | ".join(cell(h) for h in table.header) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(table.header) - 3)) + "|")
        lines += ["| " + " | ".join(cell(c) for c in line) + " |" for line in table.body]
    if outcome.failed:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"- {c.cell.label} seed {c.cell.seed}: {cell(c.error or '')} (run {c.run_id})" for c in outcome.failed
        ]
    if outcome.rows:
        lines += ["", "## Rankings", "", render(outcome.rows, "markdown")]
    return "\n".join(lines) + "\n"


def print_grid(outcome: GridOutcome, console: Console) -> None:
    """Print the grid leaderboard (rich): a table per evaluator and protocol id."""
    from rich.markup import escape
    from rich.table import Table

    tables = _tables(outcome)
    if not tables:
        console.print(f"grid {escape(outcome.name)}: no finished cell with evaluation metrics")
    for table in tables:
        shown = Table(
            title=escape(f"grid {outcome.name}: {table.title}"),
            caption="mean ± std over seeds; seeds: finished/total",
            title_justify="left",
            caption_justify="left",
        )
        for i, name in enumerate(table.header):
            shown.add_column(escape(name), justify="right" if i >= 3 else "left")
        for line in table.body:
            shown.add_row(*(escape(text) for text in line))
        console.print(shown)
    for item in outcome.failed:
        console.print(escape(f"FAILED {item.cell.label} seed {item.cell.seed}: {item.error}"), soft_wrap=True)


def row_json(row: LeaderboardRow) -> dict[str, Any]:
    data = asdict(row)
    for key in ("mean", "std"):
        if data[key] is not None and not math.isfinite(data[key]):
            data[key] = None
    data["column"] = f"{row.metric} ({row.protocol})"
    return data


def grid_description(spec: GridSpec, markdown: str) -> str:
    """The grid run's description: the grid file's own ``description``, then its leaderboard (as far as it fits)."""
    from dssl.tracking.browse import fit_description

    head = f"**Grid {spec.name}**" + (f": {spec.description.strip()}" if spec.description else "")
    body = markdown.split("\n", 1)[1] if markdown.startswith("# ") else markdown  # its title is the head
    return fit_description(head, body.replace("\n## ", "\n### "), f"(the whole table: {LEADERBOARD_MD})")
