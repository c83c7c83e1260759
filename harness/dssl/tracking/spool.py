"""The durable queue of tracking records that a run keeps in its folder while its server is unreachable.

Layout of ``<run folder>/tracking-queue/``:

* ``queue.jsonl`` — one JSON record per line, appended and fsync'ed before the call that produced it
  returns, in the order the run logged them. Records (``op``):

  - ``batch``: ``metrics`` ``[[key, value, timestamp_ms, step], ...]``, ``params`` ``[[key, value], ...]``,
    ``tags`` ``[[key, value], ...]`` (NaN/inf metric values are written as JSON's ``NaN``/``Infinity``);
  - ``text``: ``text`` stored as the artifact ``artifact_file`` (``results.json``, ``config.yaml``, ...);
  - ``artifact``: the local file or folder ``path`` uploaded under ``artifact_path`` (checkpoints are not
    copied: the file in the run folder is uploaded when the queue is replayed);
  - ``inputs``: ``datasets`` the run used (name, digest, source type, source, profile, context), logged as
    MLflow dataset inputs;
  - ``terminate``: the run's final ``status`` and ``end_time_ms``.

* ``sent`` — how many leading records of ``queue.jsonl`` have been uploaded (replaced atomically).

Replaying a record twice is harmless, which is what makes an interrupted upload safe to repeat: MLflow
ignores a metric identical to a logged one (same key, value, step and timestamp — the record keeps the
timestamp of the moment it was logged), a param logged again with the same value, a dataset input already
recorded for the run, and tags and artifacts are overwritten with the same content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: Name of the queue folder inside a run folder.
QUEUE_DIR = "tracking-queue"
_QUEUE_FILE = "queue.jsonl"
_SENT_FILE = "sent"
# MLflow's limits on one log_batch request (mlflow.utils.validation); merged replays stay within them.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

Record = dict[str, Any]


class RecordSpool:
    """An append-only queue of tracking records in a folder, with a count of the records already uploaded.

    One process writes a spool at a time (the run that owns the folder, or ``dssl sync``); within it, one
    thread appends while another may replay.

    Args:
        folder: The queue folder (created on the first append).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._queue = self.folder / _QUEUE_FILE
        self._sent = self.folder / _SENT_FILE

    def append(self, record: Mapping[str, Any]) -> None:
        """Add a record at the end and make it durable before returning."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps(dict(record), separators=(",", ":")) + "\n"
        with open(self._queue, "ab") as handle:
            if handle.tell() and not self._ends_with_newline():
                line = "\n" + line  # a crash tore the last append: start afresh rather than glue onto it
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self._queue, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def records(self) -> list[Record]:
        """Every whole record, oldest first (a line torn by a crash mid-append is not a record)."""
        if not self._queue.is_file():
            return []
        text = self._queue.read_text(encoding="utf-8", errors="replace")
        complete = text[: text.rfind("\n") + 1]  # the last line may be an append still in progress
        found = []
        for line in complete.splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn by a crash; what it held was never acknowledged to the caller
        return found

    def sent(self) -> int:
        """How many leading records have been uploaded."""
        try:
            return int(self._sent.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def pending(self) -> list[Record]:
        """The records not uploaded yet, oldest first."""
        return self.records()[self.sent() :]

    def mark_sent(self, count: int) -> None:
        """Record that the first ``count`` records are uploaded (written atomically)."""
        tmp = self._sent.with_suffix(".tmp")
        tmp.write_text(f"{count}\n")
        tmp.replace(self._sent)

    def replay(self, apply: Callable[[Record], None], *, on_progress: Callable[[int], None] | None = None) -> int:
        """Upload the pending records in order with ``apply``; consecutive batches go as one request.

        Args:
            apply: Uploads one record; raises when it cannot (the records from that one on stay pending).
            on_progress: Called with the number of records each successful request took off the queue.

        Returns:
            The number of records uploaded.
        """
        done = self.sent()
        uploaded = 0
        for group in _groups(self.records()[done:]):
            apply(_merged(group))
            done += len(group)
            uploaded += len(group)
            self.mark_sent(done)
            if on_progress is not None:
                on_progress(len(group))
        return uploaded


def _groups(records: list[Record]) -> Iterator[list[Record]]:
    """Runs of consecutive records that fit in one request: batches within MLflow's limits, anything else alone."""
    group: list[Record] = []
    metrics = params_tags = 0
    keys: set[tuple[str, str]] = set()
    for record in records:
        if record["op"] != "batch":
            if group:
                yield group
                group, metrics, params_tags, keys = [], 0, 0, set()
            yield [record]
            continue
        own_keys = {("p", k) for k, _ in record["params"]} | {("t", k) for k, _ in record["tags"]}
        own_metrics, own_params_tags = len(record["metrics"]), len(record["params"]) + len(record["tags"])
        fits = (
            metrics + own_metrics + params_tags + own_params_tags <= MAX_METRICS_PER_BATCH
            and params_tags + own_params_tags <= MAX_PARAMS_TAGS_PER_BATCH
            and not keys & own_keys  # a key twice in one request: MLflow refuses params, tags would race
        )
        if group and not fits:
            yield group
            group, metrics, params_tags, keys = [], 0, 0, set()
        group.append(record)
        metrics, params_tags, keys = metrics + own_metrics, params_tags + own_params_tags, keys | own_keys
    if group:
        yield group


def _merged(group: list[Record]) -> Record:
    if len(group) == 1:
        return group[0]
    return {
        "op": "batch",
        "metrics": [m for r in group for m in r["metrics"]],
        "params": [p for r in group for p in r["params"]],
        "tags": [t for r in group for t in r["tags"]],
    }
