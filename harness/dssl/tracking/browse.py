"""What makes runs browsable in the MLflow UI: descriptions, dataset inputs, and the leaderboard as a table.

* A run's description (``mlflow.note.content``, markdown, the first thing its page shows): the method, the
  backbone, the data, the budget (or *evaluation only*) and, once evaluated, the headline metric of each
  evaluator with its protocol id (:func:`run_description`).
* Its dataset inputs (the runs table's Dataset column, the run's inputs): the training and the evaluation
  data with their options and split sizes (:func:`dataset_inputs`).
* The leaderboard of an experiment (:func:`log_leaderboard`, ``dssl leaderboard --log``, and every grid at its
  end): a run named ``leaderboard`` (tag ``dssl.leaderboard``) holds it as an MLflow table
  (``leaderboard.json``: its Artifacts tab shows it with "View as table", and the experiment's evaluation
  view compares it), as ``leaderboard.md``, and as its description; the experiment's description, when dssl
  wrote it, shows the ranking too, with a link to that run.

Everything is logged through :class:`~dssl.tracking.mlflow_tracker.MlflowTracker`, so a run's records queue
in its folder while the tracking server is unreachable. This module imports neither torch nor MLflow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dssl.config import RunConfig
    from dssl.results import EvaluationResult
    from dssl.tracking.leaderboard import LeaderboardRow

#: Tag of the run that holds an experiment's leaderboard.
LEADERBOARD_TAG = "dssl.leaderboard"
#: Name of that run, and of its artifacts (``leaderboard.json`` as a table, ``leaderboard.md``).
LEADERBOARD_RUN = "leaderboard"
LEADERBOARD_TABLE = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
#: Columns of the leaderboard table, in order.
TABLE_COLUMNS = (
    "metric",
    "rank",
    "method",
    "backbone",
    "variant",
    "mean",
    "std",
    "seeds",
    "protocol",
    "dataset",
    "trained_on",
    "evaluation_only",
    "absent_classes",
    "superseded",
    "run_ids",
)
#: MLflow's limit on a tag value is 8000 characters, an experiment tag's 5000; descriptions stay below both.
_DESCRIPTION_CHARS = 4800


# -- runs ----------------------------------------------------------------------------------------------


def run_description(
    config: RunConfig,
    *,
    method: str,
    label: str | None = None,
    evaluations: Sequence[EvaluationResult] = (),
) -> str:
    """A run's description: what was trained (or evaluated as it is) on what, and what it scored.

    Args:
        config: The run's configuration.
        method: The method's leaderboard name (``dssl.method``).
        label: Set for an evaluation-only run: the name of the weights evaluated.
        evaluations: The results so far; each evaluator's first metric is quoted with its protocol id.

    Returns:
        Markdown, e.g. ``**dino** on vit_t16: trained 200 steps × 32 images on `embedded` ...``.
    """
    eval_data = (config.eval_dataset or config.dataset).name
    if label is not None:
        what = (
            f"**{label}** on {config.backbone.name}: evaluated as it is, nothing trained "
            f"(weights `{config.backbone.init}`, seed {config.seed})"
        )
    else:
        what = (
            f"**{method}** on {config.backbone.name}: trained {config.optim.steps} steps × "
            f"{config.optim.batch_size} images on `{config.dataset.name}` "
            f"(init `{config.backbone.init}`, seed {config.seed}, preset {config.preset})"
        )
    text = f"{what}; evaluated on `{eval_data}` with {', '.join(config.evaluators)}."
    scores = [_headline(e) for e in evaluations if e.metrics]
    if scores:
        text += "\n\n" + " · ".join(scores)
    return text


def _headline(evaluation: EvaluationResult) -> str:
    name, value = next(iter(evaluation.metrics.items()))
    number = f"{value.value:.2f}" + (f" ± {value.std:.2f}" if value.std is not None else "")
    return f"{evaluation.protocol_id} {name} **{number}**"


def dataset_inputs(
    config: RunConfig, *, trained: bool, sizes: Mapping[str, Mapping[str, int]], data_root: Path | None
) -> list[dict[str, Any]]:
    """The MLflow dataset inputs of a run: its training data (unless evaluation-only) and its evaluation data.

    A dataset used for both (no separate ``eval_dataset``) is one input in both contexts.

    Args:
        config: The run's configuration.
        trained: Whether the run trains.
        sizes: ``{"training": {"train": n}, "evaluation": {"train": n, "val": m}}``: images per split.
        data_root: Where file datasets live (their source); generated datasets have none.

    Returns:
        Records for :meth:`~dssl.tracking.mlflow_tracker.MlflowTracker.log_dataset_inputs`.
    """
    uses: list[tuple[str, Any]] = []
    if trained:
        uses.append(("training", config.dataset))
    uses.append(("evaluation", config.eval_dataset or config.dataset))
    records: dict[str, dict[str, Any]] = {}
    for context, spec in uses:
        options = dict(spec.options)
        digest = hashlib.sha256(json.dumps([spec.name, options], sort_keys=True).encode()).hexdigest()[:12]
        found = records.get(digest)
        if found is not None:
            found["context"] += f", {context}"
            found["profile"] = json.dumps(json.loads(found["profile"]) | {context: dict(sizes.get(context, {}))})
            continue
        root = options.get("root") or (str(data_root) if data_root is not None else None)
        if "root" in options and root is not None:
            source_type, source = "local", {"uri": str(Path(root).expanduser())}
        else:
            source_type, source = "code", {"tags": {"dssl.dataset": spec.name, "generated": "true"}}
        records[digest] = {
            "name": spec.name,
            "digest": digest,
            "source_type": source_type,
            "source": json.dumps(source),
            "profile": json.dumps({"options": options, context: dict(sizes.get(context, {}))}, default=str),
            "context": context,
        }
    return list(records.values())


# -- the leaderboard in the experiment ------------------------------------------------------------------


def leaderboard_table(rows: Sequence[LeaderboardRow]) -> tuple[list[str], list[list[Any]]]:
    """The rows as a table: :data:`TABLE_COLUMNS` and one list of values per row, section by section; means and
    standard deviations rounded to 4 decimals, an evaluation-only method marked ``(eval only)``."""
    from dssl.tracking.leaderboard import sort_rows

    data = []
    for row in sort_rows(rows):
        values = {
            "rank": row.rank,
            "method": row.method_text,
            "backbone": row.backbone,
            "variant": row.variant or "",
            "mean": _rounded(row.mean),
            "std": _rounded(row.std),
            "seeds": row.n_seeds,
            "metric": row.metric,
            "protocol": row.protocol,
            "dataset": row.dataset,
            "trained_on": row.train_dataset,
            "evaluation_only": row.evaluation_only,
            "absent_classes": row.absent_classes,
            "superseded": len(row.superseded),
            "run_ids": ", ".join(row.run_ids),
        }
        data.append([values[column] for column in TABLE_COLUMNS])
    return list(TABLE_COLUMNS), data


def _rounded(value: float | None) -> float | None:
    # Four decimals read at a glance in the UI's table; the exact numbers are in the runs.
    return None if value is None else round(value, 4)


def log_leaderboard(tracking_uri: str, experiment: str, rows: Sequence[LeaderboardRow]) -> str:
    """Write an experiment's leaderboard into it, where people browse its runs.

    The experiment's ``leaderboard`` run (created on first use, tag ``dssl.leaderboard``) gets the table
    ``leaderboard.json`` (rendered by the MLflow UI), ``leaderboard.md`` and a description with the ranking;
    the experiment's description, when dssl wrote it, shows the ranking and links to that run.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment: The experiment's name (it must exist).
        rows: Its leaderboard rows (:func:`~dssl.tracking.leaderboard.collect_rows` of that experiment).

    Returns:
        The id of the leaderboard run.
    """
    from mlflow import MlflowClient

    from dssl.tracking.leaderboard import render, search_all_runs
    from dssl.tracking.mlflow_tracker import (
        DESCRIPTION_BY_DSSL_TAG,
        DESCRIPTION_TAG,
        MlflowTracker,
        experiment_description,
        nested_runs,
    )

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        from dssl.errors import UsageError

        raise UsageError(f"no MLflow experiment named {experiment!r} in {tracking_uri}")
    existing = list(search_all_runs(client, [found.experiment_id], f"tags.`{LEADERBOARD_TAG}` = 'true'"))
    updated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    markdown = render(rows, "markdown") if rows else "_no finished run with evaluation metrics yet_"
    runs = len({run_id for row in rows for run_id in row.run_ids})
    summary = f"Leaderboard of `{experiment}` ({len(rows)} rows from {runs} runs; updated {updated})."
    with nested_runs(None):  # the leaderboard is the experiment's, never a grid's child
        tracker = MlflowTracker(
            tracking_uri=tracking_uri,
            experiment=experiment,
            run_name=LEADERBOARD_RUN,
            tags={LEADERBOARD_TAG: "true"},
            resume_run_id=existing[0].info.run_id if existing else None,
        )
    with tracker:
        columns, data = leaderboard_table(rows)
        tracker.log_table(columns, data, LEADERBOARD_TABLE)
        tracker.log_text(markdown + "\n", LEADERBOARD_MD)
        tracker.set_tags({LEADERBOARD_TAG: "true", f"{LEADERBOARD_TAG}.updated": updated})
        tracker.set_description(fit_description(summary, markdown, f"(the whole table: {LEADERBOARD_MD})"))
        run_id = tracker.run_id
    if found.tags.get(DESCRIPTION_BY_DSSL_TAG) == "true":  # never overwrite a description a person wrote
        link = f"[the run `{LEADERBOARD_RUN}`](#/experiments/{found.experiment_id}/runs/{run_id})"
        head = f"{experiment_description(experiment)}\n\n{summary} As a table: {link}."
        text = fit_description(head, markdown, f"(the whole table: {link})")
        client.set_experiment_tag(found.experiment_id, DESCRIPTION_TAG, text)
    return run_id


def fit_description(head: str, markdown: str, more: str) -> str:
    """``head`` and as many whole ``### `` sections of ``markdown`` as fit in a description (MLflow's tag limits),
    then ``more`` when some were left out."""
    text = head
    sections = markdown.split("\n\n### ")
    for i, section in enumerate(sections):
        part = ("\n\n" if i == 0 else "\n\n### ") + section
        if len(text) + len(part) + len(more) + 2 > _DESCRIPTION_CHARS:
            return f"{text}\n\n{more}"
        text += part
    return text
