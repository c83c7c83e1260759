"""One MLflow run per benchmark run, driven through :class:`mlflow.MlflowClient`.

The tracker never touches MLflow's fluent API (``mlflow.start_run`` and friends): fluent state is a
process-wide stack of active runs, which breaks as soon as two runs live in one process (tests, threads,
sweeps). Everything goes through an explicit client and run id instead.

Naming scheme in MLflow:

* params: flat keys (nested mappings joined with ``.``), values stringified and cut to
  :data:`MAX_PARAM_CHARS` characters. The CLI logs at least ``objective``, ``backbone``, ``dataset``
  and ``seed``; the leaderboard groups on them.
* metrics: ``<evaluator>/<metric>`` and ``<evaluator>/<metric>_std`` for evaluations; training metrics
  are logged under whatever keys the caller passes (``train/loss``).
* tags: ``dssl.protocol.<evaluator>`` = ``<protocol>@<version>``, ``dssl.direction.<evaluator>/<metric>``
  = ``higher`` | ``lower``, ``dssl.dataset.<evaluator>`` = dataset, ``dssl.absent_classes.<evaluator>`` =
  the absent-class convention of a mean IoU (when the evaluator records one); ``dssl.error`` on failure;
  ``dssl.nonfinite_metrics`` when NaN/inf values were logged; environment tags from
  :func:`environment_tags`.
* artifacts: ``evaluations/<evaluator>.json`` (the full evaluation result, settings included),
  ``results.json`` (:class:`~dssl.results.RunResults`), ``traceback.txt`` after a failure, plus whatever
  the caller logs (e.g. ``config.yaml``); tables (:meth:`MlflowTracker.log_table`) in the JSON layout the
  MLflow UI renders as a table.
* dataset inputs (:meth:`MlflowTracker.log_dataset_inputs`): what the run trained and evaluated on, shown in
  the UI's Dataset column and the run's inputs.
* ``mlflow.note.content``: the run's description (markdown) in the UI; experiments get one too.

Outages: once :meth:`MlflowTracker.attach_queue` gave it a folder, a tracker whose server stops answering
(connection refused, timeout, HTTP 5xx/429 after MLflow's own retries) keeps going: that record and every
later one are appended to a durable queue in the run folder (:mod:`dssl.tracking.spool`), a background
thread replays them in order as soon as the server answers again, and the end of the run waits
``flush_timeout_s`` for it. Records still queued then are uploaded later with ``dssl sync RUN_FOLDER``
(:func:`sync_run_folder`). A request the server refuses (HTTP 4xx) still raises.

Nesting: a tracker created without ``parent_run_id`` nests under the run named by :func:`nested_runs`
(in this process) or by ``$DSSL_PARENT_RUN_ID`` (for subprocesses), and adds the tags given there or in
``$DSSL_RUN_TAGS`` (a JSON object). ``dssl grid`` uses this to make each cell a child of the grid's run.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dssl.errors import ConfigError, PreemptedError, RunFailedError, UsageError
from dssl.results import EvaluationResult, RunInfo, RunResults
from dssl.tracking.credentials import CREDENTIALS_HINT, check_uri_has_no_credentials
from dssl.tracking.spool import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, QUEUE_DIR, Record, RecordSpool

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

#: MLflow 3 accepts 6000 characters per param value; params are meant to be short, greppable settings,
#: and a long value is almost always a whole nested object that belongs in an artifact instead.
MAX_PARAM_CHARS = 500
#: MLflow's tag limit is 8000; stay well below it so the UI stays readable.
MAX_TAG_CHARS = 5000
#: ``dssl.error`` carries the first line of the story; the full traceback goes to ``traceback.txt``.
MAX_ERROR_CHARS = 1000
#: MLflow's limit on the length of any key.
MAX_KEY_CHARS = 250
#: Tag set on a run stopped by a preemption signal: ``"<signal> at step <n>"``.
PREEMPTED_TAG = "dssl.preempted"
#: Seconds between two "tracking degraded" reminders while records wait.
_REMINDER_EVERY_S = 60.0

_GIT_TIMEOUT_S = 5.0
# The portable subset of MLflow's key alphabet (colons are rejected on Windows).
_BAD_KEY_CHARS = re.compile(r"[^\w./\- ]")

#: Environment variable naming the parent run of trackers created without ``parent_run_id``.
PARENT_RUN_ENV = "DSSL_PARENT_RUN_ID"
#: Tag holding the absolute path of a run's local folder, so that ``dssl bench --resume RUN_ID`` (and a
#: rerun grid) finds its ``checkpoints/last.pt``.
OUTPUT_DIR_TAG = "dssl.output_dir"
#: Environment variable with extra tags (a JSON object) for trackers created in this process.
RUN_TAGS_ENV = "DSSL_RUN_TAGS"
#: The run and experiment tag the MLflow UI shows (as markdown) as the description.
DESCRIPTION_TAG = "mlflow.note.content"
#: Experiment tag set when dssl wrote the experiment's description (so that dssl may rewrite it, never a user's).
DESCRIPTION_BY_DSSL_TAG = "dssl.description"
#: The dataset input tag the MLflow UI shows as a dataset's role in a run (training, evaluation, ...).
DATASET_CONTEXT_TAG = "mlflow.data.context"
#: The run tag listing the artifacts the MLflow UI may show as tables.
LOGGED_TABLES_TAG = "mlflow.loggedArtifacts"
#: The experiment tag from which the MLflow UI picks an experiment's page: training runs, not GenAI traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

_RUN_DEFAULTS: ContextVar[tuple[str | None, dict[str, str]] | None] = ContextVar("dssl_run_defaults", default=None)


@contextmanager
def nested_runs(parent_run_id: str | None, tags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Within the block, trackers created without ``parent_run_id`` nest under ``parent_run_id`` and get ``tags``.

    Args:
        parent_run_id: The MLflow run the new runs become children of (``None``: no nesting).
        tags: Tags added to every run created in the block (explicit tags of a tracker win).

    Example:
        >>> with nested_runs("0123abcd", {"dssl.grid": "cpu-smoke"}):  # doctest: +SKIP
        ...     dssl.api.run(config)  # its run is a child of 0123abcd
    """
    token = _RUN_DEFAULTS.set((parent_run_id, {str(k): str(v) for k, v in (tags or {}).items()}))
    try:
        yield
    finally:
        _RUN_DEFAULTS.reset(token)


def run_defaults() -> tuple[str | None, dict[str, str]]:
    """The parent run id and extra tags new trackers get: from :func:`nested_runs`, else the environment.

    Returns:
        ``(parent_run_id, tags)``; ``(None, {})`` when nothing is configured.
    """
    current = _RUN_DEFAULTS.get()
    if current is not None:
        return current[0], dict(current[1])
    parent = os.environ.get(PARENT_RUN_ENV) or None
    raw = os.environ.get(RUN_TAGS_ENV)
    tags: dict[str, str] = {}
    if raw:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise UsageError(f"${RUN_TAGS_ENV} is not a JSON object: {raw[:80]!r}") from None
        if not isinstance(data, dict):
            raise UsageError(f"${RUN_TAGS_ENV} is not a JSON object: {raw[:80]!r}")
        tags = {str(k): str(v) for k, v in data.items()}
    return parent, tags


def default_tracking_uri(cwd: Path | None = None) -> str:
    """The tracking URI a run uses when none is configured.

    Args:
        cwd: Directory holding the store; defaults to the current working directory.

    Returns:
        ``$MLFLOW_TRACKING_URI`` when set, else an embedded SQLite store ``sqlite:///<abs cwd>/mlflow.db``
        (no server needed; ``dssl ui`` browses it).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    base = (cwd or Path.cwd()).resolve()
    return f"sqlite:///{(base / 'mlflow.db').as_posix()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file behind a ``sqlite:///`` URI, or ``None`` for other stores and in-memory SQLite."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    raw = unquote(tracking_uri[len("sqlite:///") :]).split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(raw).resolve()


def sanitize_key(key: str) -> str:
    """Make ``key`` acceptable to MLflow as a param, metric or tag key.

    Characters outside MLflow's portable alphabet become ``_``, and path tricks (``a//b``, ``./a``,
    ``a/../b``) are flattened, because MLflow refuses keys that would normalise to another path.
    """
    key = _BAD_KEY_CHARS.sub("_", str(key))
    parts = [p if p != ".." else "__" for p in key.split("/") if p not in ("", ".")]
    return "/".join(parts)[:MAX_KEY_CHARS] or "_"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        # JSON rather than repr so that values read the same whatever produced them (tuple vs list).
        return json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else list(value), default=str)
    return str(value)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, prefix=f"{full}.")
        else:
            yield full, value


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _to_plain(data: Any) -> Any:
    # A JSON round trip turns Paths, enums, tuples and numpy scalars into plain YAML/JSON-safe values.
    return json.loads(json.dumps(data, default=str))


def _batch(
    *,
    metrics: Iterable[tuple[str, float, int, int]] = (),
    params: Iterable[tuple[str, str]] = (),
    tags: Iterable[tuple[str, str]] = (),
) -> Record:
    """A ``batch`` record (see :mod:`dssl.tracking.spool`): plain lists, so that it can be queued as JSON."""
    return {
        "op": "batch",
        "metrics": [list(m) for m in metrics],
        "params": [list(p) for p in params],
        "tags": [list(t) for t in tags],
    }


def apply_record(client: MlflowClient, run_id: str, record: Mapping[str, Any]) -> None:
    """Send one tracking record (see :mod:`dssl.tracking.spool`) to ``run_id``; raises what MLflow raises."""
    op = record["op"]
    if op == "batch":
        from mlflow.entities import Metric, Param, RunTag

        _log_batch(
            client,
            run_id,
            metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in record["metrics"]],
            params=[Param(k, v) for k, v in record["params"]],
            tags=[RunTag(k, v) for k, v in record["tags"]],
        )
    elif op == "text":
        client.log_text(run_id, record["text"], record["artifact_file"])
    elif op == "artifact":
        path = Path(record["path"])
        if path.is_dir():
            client.log_artifacts(run_id, str(path), record.get("artifact_path"))
        elif path.is_file():
            client.log_artifact(run_id, str(path), record.get("artifact_path"))
        else:
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or directory")
    elif op == "inputs":
        from mlflow.entities import Dataset, DatasetInput, InputTag

        client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(
                    dataset=Dataset(
                        name=d["name"],
                        digest=d["digest"],
                        source_type=d["source_type"],
                        source=d["source"],
                        profile=d.get("profile"),
                    ),
                    tags=[InputTag(key=DATASET_CONTEXT_TAG, value=d["context"])],
                )
                for d in record["datasets"]
            ],
        )
    elif op == "terminate":
        client.set_terminated(run_id, status=record["status"], end_time=record.get("end_time_ms"))
    else:
        raise ValueError(f"unknown tracking record {op!r}")


def _log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    metrics: Sequence[Any] = (),
    params: Sequence[Any] = (),
    tags: Sequence[Any] = (),
) -> None:
    metrics, params, tags = list(metrics), list(params), list(tags)
    if (
        len(metrics) <= MAX_METRICS_PER_BATCH
        and len(params) <= MAX_PARAMS_TAGS_PER_BATCH
        and len(tags) <= MAX_PARAMS_TAGS_PER_BATCH
        and len(metrics) + len(params) + len(tags) <= MAX_METRICS_PER_BATCH
    ):
        if metrics or params or tags:
            client.log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=True)
        return
    # Only oversized requests are split, into the fewest batches MLflow accepts.
    for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=chunk, synchronous=True)
    for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=chunk, synchronous=True)
    for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=chunk, synchronous=True)


def is_outage(exc: BaseException) -> bool:
    """Whether a tracking call failed because the server could not answer (worth retrying later).

    True for connection failures and timeouts and for HTTP 5xx and 429 (also after MLflow's own retries);
    false when the server answered and refused the request (4xx: bad value, unknown run, credentials).
    """
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return status >= 500 or status == 429
    try:
        import requests
    except ImportError:  # pragma: no cover - mlflow depends on requests
        requests = None  # type: ignore[assignment]
    if requests is not None and isinstance(exc, requests.exceptions.RequestException):
        response = getattr(exc, "response", None)
        if response is None:
            return True
        return response.status_code >= 500 or response.status_code == 429
    return isinstance(exc, (ConnectionError, TimeoutError))


def _short_error(exc: BaseException | None) -> str:
    """The gist of a tracking error, e.g. ``[Errno 111] Connection refused``, in at most 160 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return _truncate(found.group(0).strip() if found else text, 160)


def check_tracking_access(tracking_uri: str | None) -> str:
    """Make sure a tracking server accepts this process before anything is trained.

    Local stores are not checked. For an ``http(s)`` server, one cheap authenticated request tells a
    wrong or missing password (a clear usage error) from a server that is down.

    Returns:
        The tracking URI in use.

    Raises:
        ConfigError: Credentials in the URI, or the server refuses them (HTTP 401/403), exit code 2.
        RunFailedError: The server cannot be reached.
    """
    uri = tracking_uri or default_tracking_uri()
    check_uri_has_no_credentials(uri)
    if not uri.startswith(("http://", "https://")):
        return uri
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except MlflowException as exc:
        status = exc.get_http_status_code()
        if status in (401, 403):
            user = os.environ.get("MLFLOW_TRACKING_USERNAME")
            who = f"user {user!r}" if user else "no user (MLFLOW_TRACKING_USERNAME is not set)"
            refused = "rejected the credentials of" if status == 401 else "denies access to"
            raise ConfigError(
                f"the MLflow server {uri} {refused} {who}; {CREDENTIALS_HINT} for an account there"
            ) from None
        if is_outage(exc):
            raise RunFailedError(f"cannot reach the MLflow server {uri} ({_short_error(exc)})") from None
        raise
    return uri


def sync_run_folder(run_dir: Path, *, tracking_uri: str | None = None) -> tuple[str, str, int]:
    """Upload what a run left in its tracking queue (``dssl sync``).

    Args:
        run_dir: The run's folder (holding ``run.json`` and ``tracking-queue/``).
        tracking_uri: Where to upload; default: the URI the run recorded.

    Returns:
        ``(run_id, tracking_uri, records uploaded)``.

    Raises:
        UsageError: Not a run folder, or a run that was not tracked.
        ConfigError: The server refuses the credentials.
        RunFailedError: The server is still unreachable or refuses a record (the rest stays queued).
    """
    info_file = run_dir / "run.json"
    if not info_file.is_file():
        raise UsageError(f"dssl sync {run_dir}: not a run folder (expected {info_file})")
    info = RunInfo.model_validate_json(info_file.read_text())
    if info.run_id is None:
        raise UsageError(f"dssl sync {run_dir}: the run was not tracked; nothing to upload")
    spool = RecordSpool(run_dir / QUEUE_DIR)
    if not spool.pending():
        return info.run_id, tracking_uri or info.tracking_uri or default_tracking_uri(), 0
    uri = check_tracking_access(tracking_uri or info.tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        uploaded = spool.replay(lambda record: apply_record(client, info.run_id, record))  # type: ignore[arg-type]
    except Exception as exc:
        left = len(spool.pending())
        problem = "is unreachable" if is_outage(exc) else "refused a record"
        raise RunFailedError(
            f"dssl sync {run_dir}: {uri} {problem} ({_short_error(exc)}); {left} records still wait in {spool.folder}"
        ) from None
    return info.run_id, uri, uploaded


class MlflowTracker:
    """A context manager around one MLflow run.

    On normal exit the run is marked ``FINISHED``. An exception marks it ``FAILED`` and records
    ``dssl.error`` = ``"<Type>: <message>"`` (plus ``traceback.txt``); ``KeyboardInterrupt`` marks it
    ``KILLED``, and so does :class:`~dssl.errors.PreemptedError`, with the tag ``dssl.preempted`` instead of
    an error. The exception always propagates, and everything logged before it stays in the run.

    Args:
        tracking_uri: MLflow tracking URI; :func:`default_tracking_uri` when ``None``.
        experiment: Experiment name; created on first use.
        run_name: Display name of the run; MLflow invents one when ``None``.
        parent_run_id: Nest this run under another (e.g. one cell of a grid); default: the one
            configured by :func:`nested_runs` or ``$DSSL_PARENT_RUN_ID``, if any.
        tags: Tags set when the run is created, on top of those of :func:`nested_runs` /
            ``$DSSL_RUN_TAGS``.
        resume_run_id: Reopen this existing run instead of creating one (``dssl bench --resume``): its
            status goes back to ``RUNNING``, a stale ``dssl.error`` tag is removed, and it ends as usual.
            ``experiment``, ``run_name``, ``parent_run_id`` and ``tags`` are then taken from the run.

    Example:
        >>> with MlflowTracker(experiment="dssl", run_name="dino-s0") as run:  # doctest: +SKIP
        ...     run.log_params({"objective": "dino", "seed": 0})
        ...     run.log_evaluation(result)
    """

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str = "dssl",
        run_name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.resume_run_id = resume_run_id
        self.experiment = experiment
        self.run_name = run_name
        default_parent, default_tags = run_defaults()
        self.parent_run_id = parent_run_id or default_parent
        self._initial_tags = default_tags | dict(tags or {})
        self.client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self._run_id: str | None = None
        self._nonfinite: set[str] = set()
        # Outage handling (attach_queue): while degraded, records go to the spool and a thread replays them.
        self._spool: RecordSpool | None = None
        self._notify: Callable[[str], None] = logger.warning
        self._retry_every_s = 30.0
        self._flush_timeout_s = 120.0
        self._lock = threading.Lock()
        self._degraded = False
        self._waiting = 0
        self._outage = ""
        self._reminded_at = 0.0
        self._wake = threading.Event()
        self._drainer_done = threading.Event()
        self._closing = False
        self._refused: BaseException | None = None
        self._tables: list[dict[str, str]] = []

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> MlflowTracker:
        if self._run_id is not None:
            raise RuntimeError("this MlflowTracker already started a run; create a new tracker per run")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        if self.resume_run_id is not None:
            return self._reopen(self.resume_run_id)
        self.experiment_id = self._get_or_create_experiment()
        tags = {"mlflow.user": _user(), "mlflow.source.name": Path(sys.argv[0]).name or "python"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        for key, value in self._initial_tags.items():
            tags[sanitize_key(key)] = _truncate(str(value), MAX_TAG_CHARS)
        run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
        self._run_id = run.info.run_id
        self.run_name = run.info.run_name
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self.client is None or self._run_id is None:
            return False
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            status = "FINISHED"
        elif isinstance(exc, (KeyboardInterrupt, PreemptedError)):
            status = "KILLED"
        else:
            status = "FAILED"
        try:
            if isinstance(exc, PreemptedError):
                self.set_tags({PREEMPTED_TAG: exc.where})
            elif exc is not None and status != "FINISHED":
                detail = str(exc)
                message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
                self.set_tags({"dssl.error": _truncate(message, MAX_ERROR_CHARS)})
                self.log_text("".join(traceback.format_exception(exc_type, exc, tb)), "traceback.txt")
        except Exception:
            # Recording the failure must never replace the user's exception with a tracking error.
            logger.warning("could not record the error of MLflow run %s", self._run_id, exc_info=True)
        try:
            self._submit({"op": "terminate", "status": status, "end_time_ms": int(time.time() * 1000)})
        except Exception:
            if exc is None:
                raise
            logger.warning("could not mark MLflow run %s as %s", self._run_id, status, exc_info=True)
        finally:
            self._finish_queue()
        return False

    def _reopen(self, run_id: str) -> MlflowTracker:
        assert self.client is not None
        run = self.client.get_run(run_id)
        with contextlib.suppress(ValueError, TypeError):
            self._tables = [t for t in json.loads(run.data.tags.get(LOGGED_TABLES_TAG, "[]")) if isinstance(t, dict)]
        if self._spool is not None:
            # What an earlier process of this run queued during an outage goes first (it may end the run as
            # KILLED), then the run is reopened.
            self._spool.replay(lambda record: apply_record(self.client, run_id, record))
            self._waiting = 0
        self.experiment_id = run.info.experiment_id
        self.experiment = self.client.get_experiment(run.info.experiment_id).name
        self.run_name = run.info.run_name
        self.parent_run_id = run.data.tags.get("mlflow.parentRunId")
        if "dssl.error" in run.data.tags:
            self.client.delete_tag(run_id, "dssl.error")
        self.client.update_run(run_id, status="RUNNING")
        self._run_id = run_id
        self._nonfinite = {k for k in run.data.tags.get("dssl.nonfinite_metrics", "").split(",") if k}
        return self

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        assert self.client is not None
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                location = self._artifact_location()
                tags = {DESCRIPTION_TAG: experiment_description(self.experiment), DESCRIPTION_BY_DSSL_TAG: "true"}
                tags[EXPERIMENT_KIND_TAG] = EXPERIMENT_KIND
                return self.client.create_experiment(self.experiment, artifact_location=location, tags=tags)
            except MlflowException as exc:
                # Another process created it between our lookup and our create.
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            raise UsageError(
                f"MLflow experiment {self.experiment!r} is deleted at {self.tracking_uri}; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                "or pick another name"
            )
        missing = {}
        if not experiment.tags.get(DESCRIPTION_TAG):  # created before dssl described its experiments
            missing = {DESCRIPTION_TAG: experiment_description(self.experiment), DESCRIPTION_BY_DSSL_TAG: "true"}
        if not experiment.tags.get(EXPERIMENT_KIND_TAG):
            missing[EXPERIMENT_KIND_TAG] = EXPERIMENT_KIND
        for key, value in missing.items():
            self.client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id

    def _artifact_location(self) -> str | None:
        # MLflow would put artifacts of a SQLite store under ./mlruns of whatever directory the first
        # run happened to start in; keeping them next to the database keeps the store self-contained.
        db = sqlite_path(self.tracking_uri)
        if db is None:
            return None
        safe = re.sub(r"[^\w.-]", "_", self.experiment) or "experiment"
        return (db.parent / "mlartifacts" / safe).as_uri()

    # -- identity ------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The MLflow run id; only valid inside the ``with`` block (and after it)."""
        if self._run_id is None:
            raise RuntimeError("the MLflow run has not started; use the tracker as a context manager")
        return self._run_id

    @property
    def info(self) -> RunInfo:
        """Identity of the run, as passed to lifecycle hooks."""
        return RunInfo(
            run_id=self._run_id,
            run_name=self.run_name,
            experiment=self.experiment,
            tracking_uri=self.tracking_uri,
        )

    def _require_client(self) -> MlflowClient:
        if self.client is None or self._run_id is None:
            raise RuntimeError("the MLflow run has not started; use the tracker as a context manager")
        return self.client

    # -- logging -------------------------------------------------------------------------------------

    def _submit(self, record: Record) -> None:
        """Send one record now, or queue it while the server is unreachable (see :meth:`attach_queue`)."""
        if self._spool is None:
            self._apply(record)
            return
        with self._lock:
            if not self._degraded:
                try:
                    self._apply(record)
                    return
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    self._degraded, self._outage = True, _short_error(exc)
                    self._spool.append(record)
                    self._waiting += 1
                    self._reminded_at = time.monotonic()
                    self._notify(
                        f"tracking degraded: {self.tracking_uri} is unreachable ({self._outage}); training goes on "
                        f"and records are queued in {self._spool.folder} ({self._waiting} waiting)"
                    )
                    self._start_drainer()
                    return
            self._spool.append(record)
            self._waiting += 1
            if time.monotonic() - self._reminded_at >= _REMINDER_EVERY_S:
                self._reminded_at = time.monotonic()
                self._notify(f"tracking degraded: {self._waiting} records wait in {self._spool.folder}")

    def attach_queue(
        self,
        folder: Path,
        *,
        notify: Callable[[str], None] | None = None,
        retry_every_s: float = 30.0,
        flush_timeout_s: float = 120.0,
    ) -> None:
        """Keep the run going through tracking outages, queueing records durably in ``folder``.

        Call it before the ``with`` block to replay what an earlier process of a resumed run left queued
        (before the run is reopened), or inside it for a new run.

        Args:
            folder: The queue folder (``<run folder>/tracking-queue``).
            notify: Receives one line when tracking degrades, recovers, or leaves records for ``dssl sync``
                (default: a logging warning).
            retry_every_s: Seconds between attempts to upload the queue while the server is unreachable.
            flush_timeout_s: How long the end of the run waits for the server before leaving the queue.
        """
        self._spool = RecordSpool(folder)
        self._notify = notify or logger.warning
        self._retry_every_s = retry_every_s
        self._flush_timeout_s = flush_timeout_s
        self._waiting = len(self._spool.pending())

    def _apply(self, record: Record) -> None:
        apply_record(self._require_client(), self.run_id, record)

    def _start_drainer(self) -> None:
        self._drainer_done.clear()
        threading.Thread(target=self._drain, name="dssl-tracking-queue", daemon=True).start()

    def _uploaded(self, count: int) -> None:
        with self._lock:
            self._waiting -= count

    def _drain(self) -> None:
        """Replay the queue until it is empty (tracking is healthy again), the server refuses a record, or the end."""
        assert self._spool is not None and self.client is not None
        try:
            while not self._closing:
                self._wake.wait(self._retry_every_s)
                self._wake.clear()
                if self._closing:
                    return
                try:
                    self._spool.replay(self._apply, on_progress=self._uploaded)
                except Exception as exc:
                    if is_outage(exc):
                        self._outage = _short_error(exc)
                        continue
                    self._refused = exc
                    self._notify(
                        f"tracking: {self.tracking_uri} refused a queued record ({_short_error(exc)}); "
                        f"{self._waiting} records stay in {self._spool.folder}"
                    )
                    return
                with self._lock:
                    if self._waiting == 0:
                        self._degraded = False
                        self._notify(f"tracking recovered: the queued records are uploaded to {self.tracking_uri}")
                        return
                self._wake.set()  # records arrived during the replay: go on at once
        finally:
            self._drainer_done.set()

    def _finish_queue(self) -> None:
        """At the end of the run: wait for the queue to drain, else say how to upload it later."""
        if self._spool is None or not self._degraded:
            return
        self._wake.set()
        self._drainer_done.wait(self._flush_timeout_s)
        self._closing = True
        self._wake.set()
        with self._lock:
            if not self._degraded:
                return
            waiting = self._waiting
        why = f"refused: {_short_error(self._refused)}" if self._refused is not None else self._outage
        self._notify(
            f"tracking: {waiting} records of MLflow run {self._run_id} are not uploaded to {self.tracking_uri} "
            f"({why}); they wait in {self._spool.folder}. Upload them with: dssl sync {self._spool.folder.parent}"
        )

    @property
    def waiting(self) -> int:
        """Records queued in the run folder and not uploaded yet."""
        return self._waiting

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log run parameters in one batch.

        Nested mappings are flattened to dotted keys; values are stringified (sequences as JSON) and cut
        to :data:`MAX_PARAM_CHARS`. MLflow params are immutable: logging a key again with another value
        raises ``MlflowException``.

        Args:
            params: Parameter name -> value.
        """
        flat = {sanitize_key(k): _truncate(_stringify(v), MAX_PARAM_CHARS) for k, v in _flatten(params)}
        self._submit(_batch(params=flat.items()))

    def log_metrics(self, metrics: Mapping[str, float], *, step: int) -> None:
        """Log metrics of one step in one batch.

        NaN and infinite values are logged as they are (a diverged loss is a result, not noise) and
        their keys are listed in the ``dssl.nonfinite_metrics`` tag so they are easy to find.

        Args:
            metrics: Metric key -> value.
            step: Training step or epoch the values belong to.
        """
        timestamp = int(time.time() * 1000)
        batch = []
        tags = []
        new_nonfinite = []
        for key, value in metrics.items():
            name = sanitize_key(key)
            value = float(value)
            if not math.isfinite(value) and name not in self._nonfinite:
                new_nonfinite.append(name)
            batch.append((name, value, timestamp, int(step)))
        if new_nonfinite:
            self._nonfinite.update(new_nonfinite)
            logger.warning("non-finite metric values at step %d: %s", step, ", ".join(new_nonfinite))
            tags.append(("dssl.nonfinite_metrics", _truncate(",".join(sorted(self._nonfinite)), MAX_TAG_CHARS)))
        self._submit(_batch(metrics=batch, tags=tags))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags (overwriting existing ones) in one batch; values are cut to :data:`MAX_TAG_CHARS`."""
        self._submit(_batch(tags=[(sanitize_key(k), _truncate(str(v), MAX_TAG_CHARS)) for k, v in tags.items()]))

    def log_evaluation(self, result: EvaluationResult, *, step: int = 0) -> None:
        """Log one evaluator's result: metrics, protocol/direction/dataset tags and a JSON artifact.

        Metrics and tags go in a single batch, so a reader never sees a metric without its protocol.

        Args:
            result: What the evaluator returned.
            step: Step the evaluation belongs to (e.g. the epoch of an intermediate evaluation).
        """
        timestamp = int(time.time() * 1000)
        evaluator = sanitize_key(result.evaluator)
        metrics = []
        tags = [
            (f"dssl.protocol.{evaluator}", result.protocol_id),
            (f"dssl.dataset.{evaluator}", _truncate(result.dataset, MAX_TAG_CHARS)),
        ]
        if result.settings.get("diagnostic"):
            tags.append((f"dssl.diagnostic.{evaluator}", "true"))
        if result.settings.get("absent_classes"):
            tags.append((f"dssl.absent_classes.{evaluator}", str(result.settings["absent_classes"])))
        for name, metric in result.metrics.items():
            key = sanitize_key(f"{evaluator}/{name}")
            metrics.append((key, float(metric.value), timestamp, step))
            if metric.std is not None:
                metrics.append((f"{key}_std", float(metric.std), timestamp, step))
            tags.append((f"dssl.direction.{key}", metric.direction))
        self._submit(_batch(metrics=metrics, tags=tags))
        self.log_dict(result.model_dump(mode="json"), f"evaluations/{evaluator}.json")

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store a mapping as an artifact: YAML for ``.yaml``/``.yml``, JSON otherwise.

        Args:
            data: The mapping; non-JSON values (paths, enums) are stringified.
            artifact_file: Path of the artifact inside the run, e.g. ``"config.yaml"``.
        """
        plain = _to_plain(dict(data))
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=False)
        else:
            text = json.dumps(plain, indent=2) + "\n"
        self.log_text(text, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. ``"grid_leaderboard.md"``)."""
        self._submit({"op": "text", "text": text, "artifact_file": artifact_file})

    def log_results(self, results: RunResults) -> None:
        """Store ``results.json`` (with its schema version), filling in this run's identity if missing."""
        if results.run.run_id is None:
            run = self.info.model_copy(update={"output_dir": results.run.output_dir})
            results = results.model_copy(update={"run": run})
        self.log_text(results.to_json() + "\n", "results.json")

    def set_description(self, text: str) -> None:
        """The run's description in the MLflow UI (markdown), cut to :data:`MAX_TAG_CHARS`."""
        self.set_tags({DESCRIPTION_TAG: text})

    def log_dataset_inputs(self, datasets: Sequence[Mapping[str, Any]]) -> None:
        """Record the datasets a run used as MLflow dataset inputs (the UI's Dataset column, the run's inputs).

        Logging one again is harmless: MLflow keeps one input per dataset (name and digest) and run.

        Args:
            datasets: Dicts with ``name``, ``digest``, ``source_type`` (``local``, ``code``, ...), ``source``
                (JSON text), optionally ``profile`` (JSON text), and ``context`` (``training``,
                ``evaluation``, ...).
        """
        if datasets:
            self._submit({"op": "inputs", "datasets": [dict(d) for d in datasets]})

    def log_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], artifact_file: str) -> None:
        """Store a table as ``artifact_file`` (``.json``) in the layout of ``mlflow.log_table``, which the MLflow
        UI shows as a table (the run's artifacts, "View as table", and the experiment's evaluation view).

        Unlike ``mlflow.log_table`` it needs no pandas and replaces an earlier table of that name.

        Args:
            columns: Column names.
            rows: One sequence of values per row (JSON values; NaN becomes null).
            artifact_file: Path of the table inside the run, ending in ``.json``.
        """
        if not artifact_file.endswith(".json"):
            raise ValueError(f"a table artifact must end in .json, got {artifact_file!r}")
        data = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in row] for row in rows]
        self.log_text(json.dumps({"columns": list(columns), "data": data}, default=str), artifact_file)
        entry = {"path": artifact_file, "type": "table"}
        if entry not in self._tables:
            self._tables.append(entry)
        self.set_tags({LOGGED_TABLES_TAG: json.dumps(self._tables)})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file or a whole directory into the run's artifacts.

        Args:
            path: Local file or directory.
            artifact_path: Directory inside the run's artifacts; the root when ``None``.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"cannot log artifact {path}: no such file or directory")
        self._submit({"op": "artifact", "path": str(path.resolve()), "artifact_path": artifact_path})


def experiment_description(name: str) -> str:
    """The description dssl gives an experiment it creates (markdown, shown by the MLflow UI)."""
    return (
        f"**dssl benchmark runs** ({name}). Each run trains a backbone with a self-supervised objective, or "
        "evaluates given weights without training (*eval only*), and scores its frozen dense features under "
        "versioned protocols; its description says what it did and what it scored, its inputs what data it "
        "used. Runs that differ only in the seed form one leaderboard row: "
        f"`dssl leaderboard --experiment {name}`; `--log` writes the ranking here and into the run named "
        "`leaderboard`."
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _git(*args: str, cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(getattr(torch, "__version__", "unknown"))
    # Read the installed version from metadata: importing torch only to tag a run would cost seconds.
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_tags(*, device: str, plugins: Mapping[str, str], cwd: Path | None = None) -> dict[str, str]:
    """Tags that say what produced a run, for reproducing it later.

    Args:
        device: Device the run used (``"cuda:0"``, ``"cpu"``).
        plugins: Distribution name -> version of every loaded plugin.
        cwd: Directory whose git commit is recorded; the current working directory when ``None``.

    Returns:
        ``dssl.version``, ``dssl.plugin.<dist>``, ``dssl.git_commit`` and ``dssl.git_dirty`` (both
        omitted outside a git checkout), ``dssl.device``, ``dssl.torch`` (when installed) and
        ``dssl.python``.
    """
    import dssl

    cwd = cwd or Path.cwd()
    tags = {"dssl.version": dssl.__version__}
    for dist, version in sorted(plugins.items()):
        tags[sanitize_key(f"dssl.plugin.{dist}")] = str(version)
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if commit:
        tags["dssl.git_commit"] = commit
        status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
        if status is not None:
            tags["dssl.git_dirty"] = "true" if status else "false"
    tags["dssl.device"] = device
    torch_version = _torch_version()
    if torch_version:
        tags["dssl.torch"] = torch_version
    tags["dssl.python"] = platform.python_version()
    return tags
