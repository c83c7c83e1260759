"""The Python API that mirrors the CLI, for notebooks and scripts (no subprocess needed).

Whole commands: :func:`bench` (``dssl bench``), :func:`evaluate` (``dssl eval``), :func:`leaderboard`
(``dssl leaderboard``), :func:`grid_leaderboard` (the table ``dssl grid`` ends with). Their steps, for scripts
that do something in between (learning curves, baselines, exports): :func:`resolve` a configuration,
:func:`build` its components, :func:`train` them, :func:`evaluate_built` the frozen features,
:func:`save_backbone`; :func:`run` a resolved configuration as ``dssl bench`` does; :func:`profile` its
training steps; :func:`start_steps` says how far a start was already trained. The registry:
:func:`list_components`, :func:`get_component`. The functions that build components take an optional plugin
``host``; the default is the process-wide one (every installed plugin).

Example:
    >>> import dssl
    >>> results = dssl.bench(objective="dino", backbone="vit_t16", steps=20)  # doctest: +SKIP
    >>> results.evaluations[0].metrics["miou"].value  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dssl.config import RunConfig, resolve_config
from dssl.host import PluginHost, get_host

if TYPE_CHECKING:
    from torch import nn

    from dssl.engine.profiling import PhaseReport
    from dssl.engine.trainer import TrainingSummary
    from dssl.registry import ComponentEntry, ComponentKind
    from dssl.results import EvaluationResult, RunResults
    from dssl.runner import BuiltRun
    from dssl.tracking.leaderboard import LeaderboardRow

__all__ = [
    "RunConfig",
    "bench",
    "build",
    "evaluate",
    "evaluate_built",
    "get_component",
    "grid_leaderboard",
    "leaderboard",
    "list_components",
    "profile",
    "resolve",
    "run",
    "save_backbone",
    "start_steps",
    "train",
]

#: Keyword shortcuts of :func:`bench`, the same as the CLI flags.
_SHORTCUTS = {
    "objective": "objective.name",
    "backbone": "backbone.name",
    "dataset": "dataset.name",
    "augmentation": "augmentation.name",
    "init": "backbone.init",
    "steps": "optim.steps",
    "batch_size": "optim.batch_size",
    "tracking_uri": "tracking.uri",
    "experiment": "tracking.experiment",
    "run_name": "tracking.run_name",
}


def resolve(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    /,
    *,
    host: PluginHost | None = None,
    sets: Iterable[str] = (),
    **overrides: Any,
) -> RunConfig:
    """Resolve a run configuration exactly as ``dssl bench`` does (see :mod:`dssl.config`)."""
    base: Mapping[str, Any] | None = None
    config_file: str | Path | None = None
    if isinstance(config, RunConfig):
        base = config.to_dict()
    elif isinstance(config, (str, Path)):
        config_file = config
    elif config is not None:
        base = config
    cli = {_SHORTCUTS.get(k, k.replace("__", ".")): v for k, v in overrides.items()}
    if "evaluators" in cli and isinstance(cli["evaluators"], str):
        cli["evaluators"] = [cli["evaluators"]]
    return resolve_config(base=base, config_file=config_file, cli=cli, sets=sets, host=host or get_host())


def run(config: RunConfig, *, host: PluginHost | None = None, console: Any = None) -> RunResults:
    """Train, evaluate and log one resolved configuration; returns its results.

    ``console`` (a ``rich.console.Console``) receives the progress and the results table; a quiet one
    silences them. Default: a stderr console.
    """
    from dssl.runner import run_bench

    return run_bench(config, host=host or get_host(), console=console)


def build(config: RunConfig, *, host: PluginHost | None = None) -> BuiltRun:
    """Build a resolved configuration's components (datasets, augmentation, backbone with its initial
    weights, objective) exactly as ``dssl bench`` does before training; nothing is trained or logged."""
    from dssl.runner import build_run

    return build_run(config, host or get_host())


def train(
    built: BuiltRun,
    *,
    every: int = 0,
    on_interval: Callable[[int], None] | None = None,
    on_metrics: Callable[[Mapping[str, float], int], None] | None = None,
    console: Any = None,
) -> TrainingSummary:
    """Train a built run for its ``optim.steps`` with ``dssl bench``'s engine, loader and progress bar.

    Nothing is logged or checkpointed: this is the training loop alone, for scripts that evaluate along
    the way (learning curves) or export what they trained.

    Args:
        built: From :func:`build`; its objective is trained in place.
        every: Call ``on_interval(step)`` every ``every`` steps (not after the last one); 0 never.
        on_interval: E.g. an evaluation with :func:`evaluate_built`; it does not change the run.
        on_metrics: Called with the logged training metrics (loss, lr, ...) and the step, every ``log_every``.
        console: Rich console for the progress bar; default stderr.

    Returns:
        The engine's summary (steps, seconds, images per second, last logged metrics).
    """
    from rich.console import Console

    from dssl.engine.progress import TrainingProgress
    from dssl.runner import make_trainer, training_batches

    config = built.config
    trainer = make_trainer(built, on_metrics=on_metrics, checkpoint_every=every)
    trainer.on_checkpoint = on_interval
    console = console if console is not None else Console(stderr=True)
    with TrainingProgress(config.optim.steps, description="train", every=config.log_every, console=console) as bar:
        return trainer.fit(training_batches(built), progress=bar)


def evaluate_built(
    built: BuiltRun, *, backbone: nn.Module | None = None, host: PluginHost | None = None, console: Any = None
) -> list[EvaluationResult]:
    """Evaluate frozen features of a built run with its evaluators, as ``dssl bench`` does after training.

    ``backbone`` defaults to the objective's evaluated backbone (DINO: the teacher); nothing is logged.
    """
    from dssl.runner import evaluate_backbone

    return evaluate_backbone(built, host or get_host(), backbone=backbone, console=console)


def bench(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    /,
    *,
    host: PluginHost | None = None,
    sets: Iterable[str] = (),
    **overrides: Any,
) -> RunResults:
    """``dssl bench`` as a function: resolve (same precedence as the CLI) and run."""
    host = host or get_host()
    return run(resolve(config, host=host, sets=sets, **overrides), host=host)


def evaluate(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    /,
    *,
    label: str | None = None,
    host: PluginHost | None = None,
    sets: Iterable[str] = (),
    console: Any = None,
    **overrides: Any,
) -> RunResults:
    """``dssl eval`` as a function: resolve (same precedence as the CLI) and evaluate ``init`` without training."""
    from dssl.runner import run_eval

    host = host or get_host()
    return run_eval(resolve(config, host=host, sets=sets, **overrides), host=host, label=label, console=console)


def save_backbone(built: BuiltRun, path: str | Path, *, backbone: nn.Module | None = None) -> Path:
    """Write the evaluated backbone of a built run as a dssl backbone checkpoint, as a run's
    ``checkpoints/backbone.pt``: ``--init PATH`` (and ``dssl eval --init PATH``) starts from it, extra tokens
    included.

    Args:
        built: From :func:`build` (trained or not).
        path: Destination file; parent folders are created.
        backbone: What to save; default: the objective's evaluated backbone (DINO: the teacher).

    Returns:
        The written path.
    """
    from dssl.backbones.checkpoint import save_backbone as save

    network = backbone if backbone is not None else built.evaluated_backbone()
    return save(network, path, meta={"objective": built.config.objective.name, "steps": built.config.optim.steps})


def profile(
    config: RunConfig, *, steps: int, warmup: int = 2, host: PluginHost | None = None, console: Any = None
) -> PhaseReport:
    """``dssl bench --profile-steps``: time ``steps`` training steps of a configuration after ``warmup`` ones.

    Returns:
        The time per step split into data, forward, backward, optimizer and logging (also printed as a table).
    """
    from dssl.runner import profile_bench

    return profile_bench(config, host=host or get_host(), steps=steps, warmup=warmup, console=console)


def start_steps(*, backbone: str, init: str = "warmstart") -> int | None:
    """Training steps a ``backbone`` has already had when a run starts it from ``init`` (``--init``).

    0 from ``random`` init (and from ``warmstart`` where ``backbone`` has none: it then starts at random), a
    shipped warm start's steps as its provenance file records them, ``None`` where unknown (a checkpoint file,
    timm weights). A network post-trained ``N`` steps from a warm start has trained ``start_steps(...) + N`` steps
    in all: the budget its supervised ceiling is measured at.

    Example:
        >>> import dssl.api
        >>> dssl.api.start_steps(backbone="vit_cpu8", init="random")
        0
    """
    from dssl.catalogue import load_catalogue

    return load_catalogue().steps_before(init=init, backbone=backbone)


def list_components(kind: ComponentKind | None = None, *, host: PluginHost | None = None) -> list[ComponentEntry]:
    """Registered components (optionally of one kind), discovered from installed plugins, sorted by name."""
    return (host or get_host()).registry.entries(kind)


def get_component(kind: ComponentKind, name: str, *, host: PluginHost | None = None) -> ComponentEntry:
    """The registered component ``kind:name`` (``entry.load()`` imports it, ``entry.options_model()`` its options).

    Raises:
        UnknownComponentError: No such component (with "did you mean").
        PluginError: The plugin that provides it failed to load.
    """
    return (host or get_host()).get(kind, name)


def leaderboard(
    *,
    experiment: str | None = None,
    metric: str | None = None,
    protocol: str | None = None,
    diagnostics: bool = False,
    tracking_uri: str | None = None,
) -> list[LeaderboardRow]:
    """``dssl leaderboard`` as a function: finished runs grouped by configuration, mean ± std over seeds, ranked.

    Args:
        experiment: Only this MLflow experiment; every active one when ``None``.
        metric: Only this metric, ``"linear_seg/miou"`` or just ``"miou"``.
        protocol: Only this protocol, ``"linear_seg"`` (every version) or ``"linear_seg@1"``.
        diagnostics: Include diagnostic evaluators.
        tracking_uri: Where the runs are; default ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``.

    Returns:
        The rows (method, backbone, metric, protocol id, mean, std, seeds, rank, ...), section by section, best
        first in each metric's direction; empty when the store or experiment does not exist.
    """
    from dssl.tracking.leaderboard import collect_rows, sort_rows
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    rows = collect_rows(
        tracking_uri=uri, experiment=experiment, metric=metric, protocol=protocol, diagnostics=diagnostics
    )
    return sort_rows(rows)


def grid_leaderboard(
    grid_file: str | Path,
    *,
    sets: Iterable[str] = (),
    metric: str | None = None,
    protocol: str | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    host: PluginHost | None = None,
) -> list[LeaderboardRow]:
    """The grid leaderboard of ``grid_file`` as it stands: its cells' finished runs, mean ± std over seeds, ranked.

    Only the run of each cell as the grid file (and ``sets``) resolves it today counts — the table ``dssl grid``
    prints, not :func:`leaderboard`'s, which also keeps runs of the grid's earlier settings (a preset changed
    since, another ``--set``) as rows of their own. Rows are named by the cells' labels (``cotap+oaf``,
    ``warm start``); cells not run yet are missing. Nothing is trained.

    Args:
        grid_file: The grid file (``dssl grid FILE``).
        sets: ``dssl grid --set`` overrides, applied to every cell.
        metric: Only this metric, ``"linear_seg/miou"`` or just ``"miou"``.
        protocol: Only this protocol, ``"linear_seg"`` (every version) or ``"linear_seg@1"``.
        experiment: The grid's MLflow experiment; default the grid file's ``experiment`` (else ``dssl``).
        tracking_uri: Where the runs are; default ``$MLFLOW_TRACKING_URI`` or ``./mlflow.db``.
        host: Plugin host that resolves the cells; default the process-wide one.

    Raises:
        ConfigError: The grid file is invalid or a cell does not resolve (names the cell).

    Example:
        >>> rows = dssl.api.grid_leaderboard("benchmarks/cpu-compare.yaml", metric="linear_seg/miou")  # doctest: +SKIP
        >>> {row.objective: round(row.mean, 2) for row in rows}["warm start"]  # doctest: +SKIP
        11.13
    """
    from dssl.grid.leaderboard import grid_rows
    from dssl.grid.plan import plan_grid
    from dssl.grid.spec import load_grid
    from dssl.tracking.leaderboard import filter_rows, sort_rows
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    spec = load_grid(Path(grid_file), sets=list(sets))
    uri = tracking_uri or default_tracking_uri()
    cells = plan_grid(
        spec, host=host or get_host(), tracking_uri=uri, experiment=spec.experiment_name(experiment), source=grid_file
    )
    return sort_rows(filter_rows(grid_rows(cells, tracking_uri=uri), metric=metric, protocol=protocol))
