"""The leaderboard: finished MLflow runs grouped by configuration, mean ± std over seeds.

Numbers are only ranked against numbers of the same *section*: same metric, same protocol id
(``<protocol>@<version>``), same evaluation dataset and same absent-class convention of the mean IoU
(``exclude_no_gt``, ``exclude_empty`` or ``zero``; shown under each table). Two versions of one protocol,
a protocol run with another convention, or a paper's own protocol next to ours, are shown as separate
tables and never interleaved.

Example:
    >>> rows = collect_rows(tracking_uri="sqlite:///mlflow.db", protocol="linear_seg")  # doctest: +SKIP
    >>> print(render(sort_rows(rows), "markdown"))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from dssl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

Direction = Literal["higher", "lower"]
Format = Literal["table", "markdown", "csv", "json"]

_SEARCH_PAGE = 1000
#: Run tag naming the method when a variant of an objective is its own method (e.g. ``cotap+oaf``).
METHOD_TAG = "dssl.method"
_REFERENCE_KEYS = ("method", "backbone", "dataset", "protocol", "metric", "value")
#: Run tag prefix of the absent-class convention of an evaluator's mean IoU.
ABSENT_CLASSES_TAG = "dssl.absent_classes."
_CSV_FIELDS = (
    "rank",
    "objective",
    "backbone",
    "dataset",
    "train_dataset",
    "protocol",
    "metric",
    "direction",
    "mean",
    "std",
    "n_seeds",
    "absent_classes",
    "reference",
    "source",
    "run_ids",
)


@dataclass(frozen=True)
class LeaderboardRow:
    """One configuration's number under one protocol.

    Attributes:
        objective: Objective (SSL method); the paper's method for references.
        backbone: Backbone name.
        dataset: Dataset the metric was measured on (the evaluator's dataset).
        protocol: Protocol id, ``"<protocol>@<version>"`` (``"paper:..."`` for most references).
        metric: ``"<evaluator>/<metric>"``, e.g. ``"linear_seg/miou"``.
        mean: Mean over seeds.
        std: Sample standard deviation over seeds; ``None`` with a single seed.
        n_seeds: Number of seeds behind ``mean``.
        direction: Whether higher or lower is better.
        reference: A published number, shown for context and never ranked.
        source: Where a reference number comes from.
        run_ids: MLflow runs behind the row, one per seed.
        train_dataset: The run's ``dataset`` param (what it was trained on), if different rows may differ.
        absent_classes: How classes absent from the ground truth enter the mean IoU (``None`` when the
            metric is not a mean over classes or the run did not record it).
        rank: Rank inside the section, set by :func:`sort_rows`; ``None`` for references.
    """

    objective: str
    backbone: str
    dataset: str
    protocol: str
    metric: str
    mean: float
    std: float | None
    n_seeds: int
    direction: Direction = "higher"
    reference: bool = False
    source: str | None = None
    run_ids: list[str] = field(default_factory=list)
    train_dataset: str | None = None
    absent_classes: str | None = None
    rank: int | None = None

    @property
    def section(self) -> tuple[str, str, str, str]:
        """``(metric, protocol, dataset, absent_classes)``: rows are only ranked within one section."""
        return (self.metric, self.protocol, self.dataset, self.absent_classes or "")

    @property
    def value_text(self) -> str:
        """``"43.21 ± 0.85"``, or ``"43.21"`` without a std."""
        text = f"{self.mean:.2f}"
        return text if self.std is None else f"{text} ± {self.std:.2f}"


# -- reading MLflow ------------------------------------------------------------------------------------


def collect_rows(
    *,
    tracking_uri: str,
    experiment: str | None = None,
    metric: str | None = None,
    protocol: str | None = None,
    diagnostics: bool = False,
) -> list[LeaderboardRow]:
    """Read finished runs and aggregate their evaluation metrics over seeds.

    Diagnostics (evaluators whose results are tagged ``dssl.diagnostic.<evaluator>``, e.g. concentration
    and DSE) are left out unless ``diagnostics`` is true: they describe features, they do not rank them.

    A run contributes when it is ``FINISHED`` and has ``objective`` and ``backbone`` params. Its metrics
    ``<evaluator>/<name>`` count when the run carries ``dssl.protocol.<evaluator>`` (so training metrics
    and ``*_std`` companions are left out). Runs are grouped by (objective, backbone, dataset, training
    dataset, protocol, metric); when one seed was run several times, the latest run counts.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Only this experiment; all active experiments when ``None``.
        metric: Only this metric, as ``"linear_seg/miou"`` or just ``"miou"``.
        protocol: Only this protocol, as ``"linear_seg"`` (every version) or ``"linear_seg@1"``.

    Returns:
        Unsorted rows (see :func:`sort_rows`); empty when the store or experiment does not exist.
    """
    from dssl.tracking.mlflow_tracker import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        # Reading must not create an empty store as a side effect of a typo.
        return []
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_ids = _experiment_ids(client, experiment)
    if not experiment_ids:
        return []

    # (objective, backbone, dataset, train_dataset, protocol, metric, absent) -> seed -> (start, run_id, value)
    groups: dict[tuple[str, ...], dict[str, tuple[int, str, float]]] = {}
    directions: dict[tuple[str, ...], Direction] = {}
    for run in _finished_runs(client, experiment_ids):
        params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
        # A variant that is its own method (cotap+oaf) is tagged as such; the objective param is the fallback.
        objective, backbone = tags.get(METHOD_TAG) or params.get("objective"), params.get("backbone")
        if not objective or not backbone:
            continue  # not a benchmark run (e.g. the parent of a sweep)
        train_dataset = params.get("dataset")
        seed = params.get("seed") or run.info.run_id
        for key, value in metrics.items():
            evaluator, sep, name = key.partition("/")
            if not sep or (name.endswith("_std") and key[: -len("_std")] in metrics):
                continue
            run_protocol = tags.get(f"dssl.protocol.{evaluator}")
            if run_protocol is None or (not diagnostics and tags.get(f"dssl.diagnostic.{evaluator}") == "true"):
                continue
            dataset = tags.get(f"dssl.dataset.{evaluator}") or train_dataset or "?"
            absent = tags.get(f"{ABSENT_CLASSES_TAG}{evaluator}", "")
            group = (objective, backbone, dataset, train_dataset or "", run_protocol, key, absent)
            direction = tags.get(f"dssl.direction.{key}", "higher")
            directions.setdefault(group, "lower" if direction == "lower" else "higher")
            start = run.info.start_time or 0
            seeds = groups.setdefault(group, {})
            if seed not in seeds or seeds[seed][0] < start:
                seeds[seed] = (start, run.info.run_id, float(value))

    rows = []
    for group, seeds in groups.items():
        objective, backbone, dataset, train_dataset, run_protocol, key, absent = group
        ordered = [seeds[s] for s in sorted(seeds, key=_seed_order)]
        values = [v for _, _, v in ordered]
        rows.append(
            LeaderboardRow(
                objective=objective,
                backbone=backbone,
                dataset=dataset,
                protocol=run_protocol,
                metric=key,
                mean=statistics.fmean(values),
                std=statistics.stdev(values) if len(values) > 1 else None,
                n_seeds=len(values),
                direction=directions[group],
                run_ids=[run_id for _, run_id, _ in ordered],
                train_dataset=train_dataset or None,
                absent_classes=absent or None,
            )
        )
    return filter_rows(rows, metric=metric, protocol=protocol)


def _seed_order(seed: str) -> tuple[int, int, str]:
    # Numeric seeds in numeric order (2 before 10), anything else after them.
    return (0, int(seed), "") if seed.isdigit() else (1, 0, seed)


def _experiment_ids(client: Any, experiment: str | None) -> list[str]:
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        return [found.experiment_id] if found is not None and found.lifecycle_stage == "active" else []
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=_SEARCH_PAGE, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def search_all_runs(
    client: Any, experiment_ids: Sequence[str], filter_string: str = "", order_by: Sequence[str] | None = None
) -> Iterable[Any]:
    """Every run of ``experiment_ids`` matching ``filter_string``, all result pages of MLflow's search."""
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=filter_string,
            max_results=_SEARCH_PAGE,
            order_by=list(order_by) if order_by else None,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _finished_runs(client: Any, experiment_ids: list[str]) -> Iterable[Any]:
    return search_all_runs(client, experiment_ids, "attributes.status = 'FINISHED'")


# -- references, filters, sorting -----------------------------------------------------------------------


def reference_rows(references: Sequence[Mapping[str, Any]]) -> list[LeaderboardRow]:
    """Published numbers (``references`` of ``registry.yaml``) as rows marked ``reference=True``.

    Args:
        references: Dicts with ``method``, ``backbone``, ``dataset``, ``protocol``, ``metric``, ``value``
            and ``source``; optionally ``direction`` (default ``higher``), ``std``, ``n_seeds`` and
            ``absent_classes``.

    Raises:
        UsageError: A reference lacks a required key.
    """
    rows = []
    for i, ref in enumerate(references):
        missing = [k for k in _REFERENCE_KEYS if k not in ref]
        if missing:
            raise UsageError(f"references[{i}] lacks {', '.join(missing)} (got {sorted(ref)})")
        std = ref.get("std")
        rows.append(
            LeaderboardRow(
                objective=str(ref["method"]),
                backbone=str(ref["backbone"]),
                dataset=str(ref["dataset"]),
                protocol=str(ref["protocol"]),
                metric=str(ref["metric"]),
                mean=float(ref["value"]),
                std=None if std is None else float(std),
                n_seeds=int(ref.get("n_seeds") or 1),
                direction="lower" if ref.get("direction") == "lower" else "higher",
                reference=True,
                source=None if ref.get("source") is None else str(ref["source"]),
                absent_classes=None if ref.get("absent_classes") is None else str(ref["absent_classes"]),
            )
        )
    return rows


def filter_rows(
    rows: Iterable[LeaderboardRow], *, metric: str | None = None, protocol: str | None = None
) -> list[LeaderboardRow]:
    """Keep rows of one metric and/or protocol.

    Args:
        rows: Rows to filter.
        metric: ``"linear_seg/miou"`` (exact) or ``"miou"`` (any evaluator's metric of that name).
        protocol: ``"linear_seg@1"`` (exact) or ``"linear_seg"`` (every version of it).
    """
    kept = []
    for row in rows:
        if metric and metric not in (row.metric, row.metric.partition("/")[2]):
            continue
        if protocol and protocol not in (row.protocol, row.protocol.rpartition("@")[0] or None):
            continue
        kept.append(row)
    return kept


def sort_rows(rows: Iterable[LeaderboardRow]) -> list[LeaderboardRow]:
    """Order rows section by section and rank them within each section.

    Sections (metric, protocol id, dataset, absent-class convention) with measured runs come first, then
    paper-only sections; within one, rows are sorted best first in the metric's own direction (NaN last) and ranked
    1, 2, 2, 4, ... (ties share a rank). References are placed by value but get no rank.
    """
    sections: dict[tuple[str, str, str, str], list[LeaderboardRow]] = {}
    for row in rows:
        sections.setdefault(row.section, []).append(row)

    def section_order(key: tuple[str, str, str, str]) -> tuple[bool, tuple[str, str, str, str]]:
        return (all(r.reference for r in sections[key]), key)

    ordered: list[LeaderboardRow] = []
    for key in sorted(sections, key=section_order):
        members = sections[key]
        direction = _section_direction(members)
        sign = -1.0 if direction == "higher" else 1.0
        members = sorted(members, key=lambda r, sign=sign: _sort_key(r, sign))
        rank, previous, position = 0, None, 0
        for row in members:
            if row.reference:
                ordered.append(replace(row, rank=None))
                continue
            position += 1
            if previous is None or row.mean != previous:
                rank = position
            previous = row.mean
            ordered.append(replace(row, rank=rank))
    return ordered


def _sort_key(row: LeaderboardRow, sign: float) -> tuple[bool, float, bool, str, str]:
    nan = math.isnan(row.mean)
    return (nan, 0.0 if nan else sign * row.mean, row.reference, row.objective, row.backbone)


def _section_direction(rows: Sequence[LeaderboardRow]) -> Direction:
    # Measured runs carry the evaluator's declared direction; a reference's is a transcription.
    for row in rows:
        if not row.reference:
            return row.direction
    return rows[0].direction


def _sections(rows: Sequence[LeaderboardRow]) -> list[list[LeaderboardRow]]:
    out: dict[tuple[str, str, str, str], list[LeaderboardRow]] = {}
    for row in rows:
        out.setdefault(row.section, []).append(row)
    return list(out.values())


# -- rendering -------------------------------------------------------------------------------------------


def render(rows: Iterable[LeaderboardRow], fmt: Format, console: Console | None = None) -> str:
    """Render rows as text.

    Rows are (re)sorted with :func:`sort_rows`, so sections and ranks are always right.

    Args:
        rows: Rows from :func:`collect_rows` and/or :func:`reference_rows`.
        fmt: ``table`` (rich, one table per section), ``markdown`` (a heading and a table per section),
            ``csv`` (one header line, one line per row) or ``json`` (a list of objects).
        console: For ``table`` only: print the tables on this console (keeping its colours and width)
            and return ``""``.

    Returns:
        The rendered text (without a trailing newline for ``table``).
    """
    ordered = sort_rows(rows)
    if fmt == "table":
        return _render_table(ordered, console)
    if fmt == "markdown":
        return _render_markdown(ordered)
    if fmt == "csv":
        return _render_csv(ordered)
    if fmt == "json":
        return json.dumps([_row_dict(r) for r in ordered], indent=2)
    raise UsageError(f"unknown leaderboard format {fmt!r}; expected table, markdown, csv or json")


def _arrow(direction: str) -> str:
    return "↑" if direction == "higher" else "↓"


def _rank_text(row: LeaderboardRow) -> str:
    return "ref" if row.reference else str(row.rank or "")


def _origin_text(row: LeaderboardRow) -> str:
    if row.reference:
        return row.source or "reference"
    ids = [r[:8] for r in row.run_ids]
    return ", ".join(ids[:3]) + (f" +{len(ids) - 3}" if len(ids) > 3 else "")


def _heading(section: Sequence[LeaderboardRow]) -> tuple[str, str]:
    first = section[0]
    direction = _section_direction(section)
    title = f"{first.metric} — {first.protocol} on {first.dataset}"
    caption = f"protocol {first.protocol}; {direction} is better; mean ± std over seeds"
    if first.absent_classes:
        from dssl.evaluators.common_config import ABSENT_CLASS_CONVENTIONS

        words = ABSENT_CLASS_CONVENTIONS.get(first.absent_classes, first.absent_classes)
        caption += f"; absent classes: {first.absent_classes} ({words})"
    return title, caption


def _show_train_dataset(section: Sequence[LeaderboardRow]) -> bool:
    # Only worth a column when some run was trained on something else than it was evaluated on.
    return any(r.train_dataset and r.train_dataset != r.dataset for r in section)


def _render_table(rows: Sequence[LeaderboardRow], console: Console | None) -> str:
    from rich.console import Console
    from rich.table import Table

    target = console
    buffer = None
    if target is None:
        buffer = io.StringIO()
        width = max(100, shutil.get_terminal_size((120, 24)).columns)
        target = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    for i, section in enumerate(_sections(rows)):
        title, caption = _heading(section)
        direction = _section_direction(section)
        # Wide enough that title and caption stay on one line each.
        table = Table(
            title=title,
            caption=caption,
            title_justify="left",
            caption_justify="left",
            min_width=max(len(title), len(caption)),
        )
        table.add_column("#", justify="right")
        table.add_column("objective")
        table.add_column("backbone")
        if _show_train_dataset(section):
            table.add_column("trained on")
        metric_name = section[0].metric.partition("/")[2] or section[0].metric
        table.add_column(f"{metric_name} {_arrow(direction)}", justify="right")
        table.add_column("seeds", justify="right")
        table.add_column("runs / source")
        for row in section:
            cells = [_rank_text(row), row.objective, row.backbone]
            if _show_train_dataset(section):
                cells.append(row.train_dataset or "")
            cells += [row.value_text, str(row.n_seeds), _origin_text(row)]
            table.add_row(*cells, style="dim italic" if row.reference else None)
        if i:
            target.print()
        target.print(table)
    if buffer is None:
        return ""
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).rstrip("\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(rows: Sequence[LeaderboardRow]) -> str:
    parts = []
    for section in _sections(rows):
        title, caption = _heading(section)
        direction = _section_direction(section)
        value_header = f"{section[0].metric} {_arrow(direction)}"
        header = ["#", "objective", "backbone"]
        if _show_train_dataset(section):
            header.append("trained on")
        header += [value_header, "seeds", "runs / source"]
        lines = [f"### {_md_cell(title)}", "", f"_{_md_cell(caption)}_", ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        numeric = ("#", value_header, "seeds")
        lines.append("|" + "|".join("---:" if h in numeric else "---" for h in header) + "|")
        for row in section:
            cells = [_rank_text(row), row.objective, row.backbone]
            if _show_train_dataset(section):
                cells.append(row.train_dataset or "")
            cells += [row.value_text, str(row.n_seeds), _origin_text(row)]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _row_dict(row: LeaderboardRow) -> dict[str, Any]:
    data = asdict(row)
    # Strict JSON has no NaN/Infinity; a diverged run shows up as null.
    for key in ("mean", "std"):
        if data[key] is not None and not math.isfinite(data[key]):
            data[key] = None
    return data


def _render_csv(rows: Sequence[LeaderboardRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        data = asdict(row)
        data["rank"] = _rank_text(row)
        data["run_ids"] = ";".join(row.run_ids)
        data["train_dataset"] = row.train_dataset or ""
        data["source"] = row.source or ""
        data["absent_classes"] = row.absent_classes or ""
        data["std"] = "" if row.std is None else repr(row.std)
        data["mean"] = repr(row.mean)
        writer.writerow({k: data[k] for k in _CSV_FIELDS})
    return buffer.getvalue().rstrip("\n")
