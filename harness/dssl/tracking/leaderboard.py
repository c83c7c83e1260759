"""The leaderboard: finished MLflow runs grouped by configuration, mean ± std over seeds.

A row is one configuration measured over seeds: runs share a row only when they differ in nothing but the
seed — the run tag ``dssl.row_key.<evaluator>`` (:meth:`dssl.config.RunConfig.row_key`: steps, batch size,
init, crops, training and evaluation data, every option that changes the number), else, for runs logged
before it existed, every param but the seed. When one seed of a configuration was run several times, the
latest run counts and the older ones are *superseded*: counted on the row and listed with ``--all``, never
dropped silently. When rows of one method and backbone share a table, a ``variant`` column shows what sets
them apart (``steps=20``, ``init=runs:/…``). The same grouping (:func:`aggregate_runs`) serves
``dssl leaderboard``, grid leaderboards and reports.

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
import os
import shutil
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
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
#: Run tag prefix of the hash of what changes an evaluator's numbers apart from the seed (the row a run joins).
ROW_KEY_TAG = "dssl.row_key."
#: Run tag of a run that evaluated weights without training them (``dssl eval``): ``"true"``.
EVALUATION_ONLY_TAG = "dssl.evaluation_only"
#: Params that never set two runs apart on the leaderboard (the run's own identity).
_IDENTITY_PARAMS = frozenset({"seed", "config_hash", "evaluators"})
#: Short names of settings in the variant column; other keys lose their ``.options`` part.
_SHORT_KEYS = {
    "optim.steps": "steps",
    "optim.batch_size": "batch_size",
    "optim.lr": "lr",
    "backbone.init": "init",
    "backbone.name": "backbone",
    "objective.name": "objective",
}
#: Settings listed first in the variant column, in this order.
_FIRST_KEYS = ("steps", "batch_size", "init", "lr")
_VARIANT_ITEMS = 3
#: Long enough for ``runs:/<run id>``.
_VARIANT_VALUE_CHARS = 40
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
    "variant",
    "evaluation_only",
    "reference",
    "source",
    "run_ids",
    "superseded",
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
        variant: What sets this row apart from the rows of the same method and backbone in its section
            (``"steps=20, init=random"``); ``None`` when nothing needs saying.
        row_key: The configuration the row stands for (:meth:`dssl.config.RunConfig.row_key`, or a hash of
            the run's params).
        evaluation_only: The runs evaluated weights without training them (``dssl eval``).
        superseded: Older runs of a seed of this row, replaced by a later run of the same seed: dicts with
            ``run_id``, ``seed``, ``value`` and ``by`` (the run that counts).
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
    variant: str | None = None
    row_key: str | None = None
    evaluation_only: bool = False
    superseded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method_text(self) -> str:
        """The method as shown: ``"random init (eval only)"`` for a run that trained nothing."""
        return f"{self.objective} (eval only)" if self.evaluation_only else self.objective

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

    A run contributes when it is ``FINISHED`` and has a method (``dssl.method`` tag or ``objective`` param)
    and a ``backbone`` param; rows follow :func:`aggregate_runs`. The variant column of rows that need one is
    worked out from the runs' ``config.yaml`` artifacts (one per row), else from their params.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: Only this experiment; all active experiments when ``None``.
        metric: Only this metric, as ``"linear_seg/miou"`` or just ``"miou"``.
        protocol: Only this protocol, as ``"linear_seg"`` (every version) or ``"linear_seg@1"``.
        diagnostics: Include diagnostic evaluators.

    Returns:
        Unsorted rows (see :func:`sort_rows`); empty when the store or experiment does not exist.
    """
    client = _reading_client(tracking_uri)
    if client is None:
        return []
    experiment_ids = _experiment_ids(client, experiment)
    if not experiment_ids:
        return []
    rows = aggregate_runs(
        _finished_runs(client, experiment_ids), diagnostics=diagnostics, settings=logged_settings(client)
    )
    return filter_rows(rows, metric=metric, protocol=protocol)


def _reading_client(tracking_uri: str) -> Any:
    """An MLflow client, or ``None`` when the SQLite store does not exist (reading must not create one)."""
    from dssl.tracking.mlflow_tracker import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        return None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


Identity = tuple[str, str, str]
Settings = Callable[[Any, str], "Mapping[str, Any] | None"]


def run_identity(run: Any) -> Identity | None:
    """``(method, backbone, training dataset)`` of a benchmark run; ``None`` for any other run.

    The method is the ``dssl.method`` tag (a variant that is its own method, e.g. ``cotap+oaf``, or the label
    of an evaluation-only run), else the ``objective`` param; an evaluation-only run has no training dataset.
    """
    params, tags = run.data.params, run.data.tags
    method, backbone = tags.get(METHOD_TAG) or params.get("objective"), params.get("backbone")
    if not method or not backbone:
        return None  # not a benchmark run (e.g. the parent of a grid, a report or leaderboard run)
    return method, backbone, params.get("dataset") or ""


def params_settings(run: Any) -> dict[str, str]:
    """A run's params but those that identify it (seed, config hash, evaluators): its settings as logged."""
    return {k: v for k, v in run.data.params.items() if k not in _IDENTITY_PARAMS}


def _params_row_key(run: Any) -> str:
    import hashlib

    text = json.dumps(params_settings(run), sort_keys=True)
    return "params:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def logged_settings(client: Any) -> Settings:
    """Reads what changes an evaluator's numbers from a run's ``config.yaml`` artifact (cached per run).

    Returns:
        A function ``(run, evaluator) -> settings`` (:func:`dssl.config.comparable_settings`), ``None`` when
        the run has no readable ``config.yaml``.
    """
    cache: dict[str, dict[str, Any] | None] = {}

    def read(run: Any, evaluator: str) -> Mapping[str, Any] | None:
        run_id = run.info.run_id
        if run_id not in cache:
            cache[run_id] = _download_config(client, run_id)
        config = cache[run_id]
        if config is None:
            return None
        from dssl.config import comparable_settings

        trained = run.data.tags.get(EVALUATION_ONLY_TAG) != "true"
        return comparable_settings(config, evaluator, trained=trained)

    return read


def _download_config(client: Any, run_id: str) -> dict[str, Any] | None:
    import tempfile
    from pathlib import Path

    import yaml
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    previous = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"  # one small file per row: no progress bars
    with tempfile.TemporaryDirectory(prefix="dssl-leaderboard-") as tmp:
        try:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
            data = yaml.safe_load(Path(path).read_text())
        except Exception:  # no such artifact (MLflow raises per-store types), unreadable YAML
            return None
        finally:
            if previous is None:
                del os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name]
            else:
                os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = previous
    return data if isinstance(data, dict) else None


@dataclass
class _Group:
    """The runs behind one row while they are collected: per seed, every ``(start, run_id, value)``."""

    evaluator: str
    direction: Direction
    evaluation_only: bool
    seeds: dict[str, list[tuple[int, str, float]]] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)


def aggregate_runs(
    runs: Iterable[Any],
    *,
    diagnostics: bool = False,
    identity: Callable[[Any], Identity | None] = run_identity,
    settings: Settings | None = None,
) -> list[LeaderboardRow]:
    """Group finished runs into leaderboard rows: runs that differ only in the seed, mean ± std over seeds.

    A run's metrics ``<evaluator>/<name>`` count when it carries ``dssl.protocol.<evaluator>`` (so training
    metrics and ``*_std`` companions are left out). A row is one (method, backbone, training dataset,
    evaluation dataset, protocol, metric, absent-class convention, row key); the row key is the run tag
    ``dssl.row_key.<evaluator>``, else a hash of the run's params but the seed. Per seed the latest run
    counts; older runs of that seed are listed in ``superseded``. Rows of one method and backbone that share
    a section get a ``variant``: the settings that set them apart.

    Args:
        runs: MLflow runs (only finished ones should be passed).
        diagnostics: Include diagnostic evaluators (tagged ``dssl.diagnostic.<evaluator>``).
        identity: ``(method, backbone, training dataset)`` of a run, ``None`` to leave it out; default
            :func:`run_identity` (grids pass their cell labels).
        settings: ``(run, evaluator) -> settings`` for the variant column (e.g. :func:`logged_settings`); the
            runs' params when ``None`` or when it has nothing for some run of the rows compared.

    Returns:
        Unsorted rows (see :func:`sort_rows`).
    """
    groups: dict[tuple[str, ...], _Group] = {}
    for run in runs:
        found = identity(run)
        if found is None:
            continue
        method, backbone, train_dataset = found
        params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
        seed = params.get("seed") or run.info.run_id
        start = run.info.start_time or 0
        for key, value in metrics.items():
            evaluator, sep, name = key.partition("/")
            if not sep or (name.endswith("_std") and key[: -len("_std")] in metrics):
                continue
            run_protocol = tags.get(f"dssl.protocol.{evaluator}")
            if run_protocol is None or (not diagnostics and tags.get(f"dssl.diagnostic.{evaluator}") == "true"):
                continue
            dataset = tags.get(f"dssl.dataset.{evaluator}") or train_dataset or "?"
            absent = tags.get(f"{ABSENT_CLASSES_TAG}{evaluator}", "")
            row_key = tags.get(f"{ROW_KEY_TAG}{evaluator}") or _params_row_key(run)
            group_key = (method, backbone, dataset, train_dataset, run_protocol, key, absent, row_key)
            group = groups.get(group_key)
            if group is None:
                direction: Direction = "lower" if tags.get(f"dssl.direction.{key}") == "lower" else "higher"
                only = tags.get(EVALUATION_ONLY_TAG) == "true"
                group = groups[group_key] = _Group(evaluator=evaluator, direction=direction, evaluation_only=only)
            group.seeds.setdefault(seed, []).append((start, run.info.run_id, float(value)))
            group.runs[run.info.run_id] = run

    members: list[tuple[LeaderboardRow, _Group]] = []
    for group_key, group in groups.items():
        method, backbone, dataset, train_dataset, run_protocol, key, absent, row_key = group_key
        counted: list[tuple[str, str, float]] = []
        superseded: list[dict[str, Any]] = []
        for seed in sorted(group.seeds, key=_seed_order):
            attempts = sorted(group.seeds[seed])  # oldest first; the latest counts
            _, latest_id, latest_value = attempts[-1]
            counted.append((seed, latest_id, latest_value))
            superseded += [{"run_id": r, "seed": seed, "value": v, "by": latest_id} for _, r, v in attempts[:-1]]
        values = [v for _, _, v in counted]
        row = LeaderboardRow(
            objective=method,
            backbone=backbone,
            dataset=dataset,
            protocol=run_protocol,
            metric=key,
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            n_seeds=len(values),
            direction=group.direction,
            run_ids=[run_id for _, run_id, _ in counted],
            train_dataset=train_dataset or None,
            absent_classes=absent or None,
            row_key=row_key,
            evaluation_only=group.evaluation_only,
            superseded=superseded,
        )
        members.append((row, group))
    rows = [row for row, _ in members]
    variants = _variants(members, settings)
    return [replace(row, variant=variants.get(i)) for i, row in enumerate(rows)]


def _variants(members: Sequence[tuple[LeaderboardRow, _Group]], settings: Settings | None) -> dict[int, str]:
    """Row index -> what sets the row apart from the other rows of its method and backbone in its section."""
    clusters: dict[tuple[Any, ...], list[int]] = {}
    for i, (row, _) in enumerate(members):
        clusters.setdefault((row.section, row.objective, row.backbone, row.train_dataset), []).append(i)
    found: dict[int, str] = {}
    for indices in clusters.values():
        if len({members[i][0].row_key for i in indices}) < 2:
            continue
        # The lowest seed's run stands for its row (every run of a row has the same settings but the seed).
        representatives = [(members[i][1].runs[members[i][0].run_ids[0]], members[i][1].evaluator) for i in indices]
        described: list[Mapping[str, Any] | None] = []
        if settings is not None:
            described = [settings(run, evaluator) for run, evaluator in representatives]
        if not described or any(d is None for d in described):
            described = [params_settings(run) for run, _ in representatives]
        texts = _differences([d or {} for d in described])
        found.update({i: text for i, text in zip(indices, texts, strict=True) if text})
    return found


def _differences(described: Sequence[Mapping[str, Any]]) -> list[str]:
    """For each settings mapping, ``"steps=20, init=random"``: the settings whose values are not all equal."""
    keys = sorted({k for d in described for k in d})
    differing = [k for k in keys if len({json.dumps(d.get(k), sort_keys=True, default=str) for d in described}) > 1]
    named = sorted(((_short_key(k), k) for k in differing), key=lambda item: _variant_order(item[0]))
    texts = []
    for settings in described:
        items = [f"{short}={_compact(settings.get(key))}" for short, key in named]
        text = ", ".join(items[:_VARIANT_ITEMS])
        if len(items) > _VARIANT_ITEMS:
            text += f" +{len(items) - _VARIANT_ITEMS} more"
        texts.append(text)
    return texts


def _short_key(key: str) -> str:
    if key in _SHORT_KEYS:
        return _SHORT_KEYS[key]
    parts = [p for p in key.removeprefix("evaluator_options.").removeprefix("optim.").split(".") if p != "options"]
    return ".".join(parts)


def _variant_order(short: str) -> tuple[int, str]:
    return (_FIRST_KEYS.index(short), "") if short in _FIRST_KEYS else (len(_FIRST_KEYS), short)


def _compact(value: Any) -> str:
    text = "—" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _VARIANT_VALUE_CHARS else text[: _VARIANT_VALUE_CHARS - 1] + "…"


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


def _sort_key(row: LeaderboardRow, sign: float) -> tuple[bool, float, bool, str, str, str]:
    nan = math.isnan(row.mean)
    return (nan, 0.0 if nan else sign * row.mean, row.reference, row.objective, row.backbone, row.variant or "")


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


def render(
    rows: Iterable[LeaderboardRow], fmt: Format, console: Console | None = None, *, all_runs: bool = False
) -> str:
    """Render rows as text.

    Rows are (re)sorted with :func:`sort_rows`, so sections and ranks are always right.

    Args:
        rows: Rows from :func:`collect_rows` and/or :func:`reference_rows`.
        fmt: ``table`` (rich, one table per section), ``markdown`` (a heading and a table per section),
            ``csv`` (one header line, one line per row) or ``json`` (a list of objects).
        console: For ``table`` only: print the tables on this console (keeping its colours and width)
            and return ``""``.
        all_runs: For ``table`` and ``markdown``: list the superseded runs under their rows (they are
            counted under each table either way; ``csv`` and ``json`` always carry them).

    Returns:
        The rendered text (without a trailing newline for ``table``).
    """
    ordered = sort_rows(rows)
    if fmt == "table":
        return _render_table(ordered, console, all_runs)
    if fmt == "markdown":
        return _render_markdown(ordered, all_runs)
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


def _heading(section: Sequence[LeaderboardRow], all_runs: bool = False) -> tuple[str, str]:
    first = section[0]
    direction = _section_direction(section)
    title = f"{first.metric} — {first.protocol} on {first.dataset}"
    caption = f"protocol {first.protocol}; {direction} is better; mean ± std over seeds"
    if first.absent_classes:
        from dssl.evaluators.common_config import ABSENT_CLASS_CONVENTIONS

        words = ABSENT_CLASS_CONVENTIONS.get(first.absent_classes, first.absent_classes)
        caption += f"; absent classes: {first.absent_classes} ({words})"
    superseded = sum(len(r.superseded) for r in section)
    if superseded:
        runs = "run" if superseded == 1 else "runs"
        caption += f"; {superseded} older {runs} of a seed superseded" + ("" if all_runs else " (--all lists them)")
    return title, caption


@dataclass
class _Grid:
    """One section laid out: column headers, which are numeric, and the lines (cells, dimmed or not)."""

    header: list[str]
    numeric: set[str]
    lines: list[tuple[list[str], bool]]


def _layout(section: Sequence[LeaderboardRow], all_runs: bool) -> _Grid:
    """The columns of a section (``trained on`` and ``variant`` only when some row needs them) and its lines;
    with ``all_runs``, each row's superseded runs follow it, dimmed."""
    direction = _section_direction(section)
    trained_on = _show_train_dataset(section)
    variant = any(r.variant for r in section)
    value_header = f"{section[0].metric.partition('/')[2] or section[0].metric} {_arrow(direction)}"
    header = ["#", "method", "backbone", *(["trained on"] if trained_on else []), *(["variant"] if variant else [])]
    header += [value_header, "seeds", "runs / source"]
    lines: list[tuple[list[str], bool]] = []
    for row in section:
        lead = [row.method_text, row.backbone, *([row.train_dataset or ""] if trained_on else [])]
        lead += [row.variant or ""] if variant else []
        lines.append(([_rank_text(row), *lead, row.value_text, str(row.n_seeds), _origin_text(row)], row.reference))
        if all_runs:
            for old in row.superseded:
                text = f"{old['run_id'][:8]} superseded by {old['by'][:8]}"
                lines.append((["old", *lead, f"{old['value']:.2f}", f"seed {old['seed']}", text], True))
    return _Grid(header=header, numeric={"#", value_header, "seeds"}, lines=lines)


def _show_train_dataset(section: Sequence[LeaderboardRow]) -> bool:
    # Only worth a column when some run was trained on something else than it was evaluated on.
    return any(r.train_dataset and r.train_dataset != r.dataset for r in section)


def _render_table(rows: Sequence[LeaderboardRow], console: Console | None, all_runs: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table

    target = console
    buffer = None
    if target is None:
        buffer = io.StringIO()
        width = max(100, shutil.get_terminal_size((120, 24)).columns)
        target = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    for i, section in enumerate(_sections(rows)):
        title, caption = _heading(section, all_runs)
        grid = _layout(section, all_runs)
        # Wide enough that title and caption stay on one line each.
        table = Table(
            title=title,
            caption=caption,
            title_justify="left",
            caption_justify="left",
            min_width=max(len(title), len(caption)),
        )
        for name in grid.header:
            table.add_column(name, justify="right" if name in grid.numeric else "left")
        for cells, dim in grid.lines:
            table.add_row(*cells, style="dim italic" if dim else None)
        if i:
            target.print()
        target.print(table)
    if buffer is None:
        return ""
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).rstrip("\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(rows: Sequence[LeaderboardRow], all_runs: bool = False) -> str:
    parts = []
    for section in _sections(rows):
        title, caption = _heading(section, all_runs)
        grid = _layout(section, all_runs)
        lines = [f"### {_md_cell(title)}", "", f"_{_md_cell(caption)}_", ""]
        lines.append("| " + " | ".join(_md_cell(h) for h in grid.header) + " |")
        lines.append("|" + "|".join("---:" if h in grid.numeric else "---" for h in grid.header) + "|")
        for cells, dim in grid.lines:
            shown = [f"_{_md_cell(c)}_" if dim and c else _md_cell(c) for c in cells]
            lines.append("| " + " | ".join(shown) + " |")
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
        data["variant"] = row.variant or ""
        data["superseded"] = ";".join(old["run_id"] for old in row.superseded)
        data["std"] = "" if row.std is None else repr(row.std)
        data["mean"] = repr(row.mean)
        writer.writerow({k: data[k] for k in _CSV_FIELDS})
    return buffer.getvalue().rstrip("\n")
