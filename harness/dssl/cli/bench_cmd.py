"""``dssl bench``: resolve one run configuration, train, evaluate, log to MLflow; ``dssl eval``: evaluate
weights as they are, without training, logged the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dssl.cli.context import host_from_context

#: Flags ``dssl bench`` and ``dssl eval`` share, outermost first: (parameter, configuration key it sets, option).
_SHARED_OPTIONS: list[tuple[str, str | None, Callable[[Any], Any]]] = [
    ("backbone", "backbone.name",
     click.option("--backbone", help="Backbone alias from registry.yaml (vit_t16, vit_s16, ...) or a timm ViT name.")),
    ("evaluators", None,
     click.option("--eval", "evaluators", multiple=True, metavar="NAME",
                  help="Evaluator (repeatable); default: all standard.")),
    ("seed", "seed", click.option("--seed", type=int, help="Random seed (CPU runs repeat exactly).")),
    ("device", "device", click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to run.")),
    ("precision", "precision",
     click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), help="Autocast precision.")),
    ("preset", "preset",
     click.option("--preset", help="Preset from registry.yaml (default: cpu without a GPU, gpu with one).")),
    ("config_file", None,
     click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML run configuration.")),
    ("sets", None,
     click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                  help="Override any key, e.g. optim.lr=1e-3 (repeatable).")),
    ("output_dir", "output_dir", click.option("--output-dir", help="Folder for checkpoints and results.json.")),
    ("data_root", "data_root",
     click.option("--data-root", type=click.Path(file_okay=False),
                  help="Folder of the real datasets ($DSSL_DATA_ROOT).")),
    ("tracking_uri", "tracking.uri",
     click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")),
    ("experiment", "tracking.experiment", click.option("--experiment", help="MLflow experiment name.")),
    ("run_name", "tracking.run_name", click.option("--run-name", help="MLflow run name.")),
    ("no_tracking", None, click.option("--no-tracking", is_flag=True, help="Do not log to MLflow.")),
    ("dry_run", None, click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")),
]  # fmt: skip


def _shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for _, _, option in reversed(_SHARED_OPTIONS):
        command = option(command)
    return command


def _resolve(ctx: click.Context, params: dict[str, Any], flags: dict[str, str]) -> Any:
    """The run configuration of a command's flags (defaults < preset < --config < flags < --set).

    Args:
        ctx: The command's context (plugin options).
        params: The command's parameters.
        flags: Parameter name -> configuration key of the command's own flags.
    """
    from dssl.config import resolve_config

    shared = {name: key for name, key, _ in _SHARED_OPTIONS if key is not None}
    keys = {key: params[name] for name, key in (shared | flags).items()}
    keys["evaluators"] = list(params["evaluators"]) or None
    keys["tracking.enabled"] = False if params["no_tracking"] else None
    return resolve_config(config_file=params["config_file"], cli=keys, sets=params["sets"], host=host_from_context(ctx))


def _print_config(config: Any) -> None:
    import yaml

    click.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)


@click.command()
@click.option("--objective", help="Objective (SSL method), e.g. dino, cotap.")
@click.option("--dataset", help="Dataset to train on, e.g. embedded (generated, no download); also evaluated on.")
@click.option(
    "--eval-dataset",
    help="Dataset the evaluators use (its train and val splits); default: the training dataset "
    "(or the preset's evaluation set of it).",
)
@click.option("--augmentation", help="Augmentation; default: the objective's own.")
@click.option(
    "--init",
    help="Backbone weights: random, timm (cached), a checkpoint path, runs:/RUN_ID, or warmstart[:NAME].",
)
@click.option("--steps", type=int, help="Optimiser steps.")
@click.option("--batch-size", type=int, help="Images per step.")
@_shared_options
@click.option(
    "--resume",
    metavar="RUN_ID|FOLDER",
    help="Continue an interrupted run from its last checkpoint, in the same MLflow run and with its own "
    "configuration (only --tracking-uri may be added).",
)
@click.option(
    "--profile-steps",
    type=click.IntRange(min=1),
    metavar="N",
    help="Time N training steps (after 2 warm-up steps) split into data, forward, backward, optimizer and "
    "logging; print the table and exit (no evaluation, no MLflow).",
)
@click.pass_context
def bench(ctx: click.Context, **params: Any) -> None:
    """Train a backbone with an objective, evaluate its frozen dense features, log the run.

    Precedence: defaults < preset < --config < flags < --set.
    """
    host = host_from_context(ctx)
    if params["resume"] is not None:
        _resume(ctx, params)
        return
    flags = {
        "objective": "objective.name",
        "dataset": "dataset.name",
        "eval_dataset": "eval_dataset.name",
        "augmentation": "augmentation.name",
        "init": "backbone.init",
        "steps": "optim.steps",
        "batch_size": "optim.batch_size",
    }
    config = _resolve(ctx, params, flags)
    if params["dry_run"]:
        _print_config(config)
        return
    if params["profile_steps"] is not None:
        from dssl.runner import profile_bench

        profile_bench(config, host=host, steps=int(params["profile_steps"]))
        return
    from dssl.api import run

    run(config, host=host)


@click.command(name="eval")
@click.option(
    "--init",
    required=True,
    help="The weights to evaluate: random (the standard random-init baseline), timm (cached pretrained), a "
    "checkpoint file (dssl, DINO/iBOT/DINOv2, MAE, timm), runs:/RUN_ID (a run's logged backbone), or "
    "warmstart[:NAME].",
)
@click.option("--label", help="Their name on the leaderboard (default: from --init, e.g. 'random init').")
@click.option("--dataset", help="Dataset to evaluate on (its train and val splits), e.g. embedded.")
@_shared_options
@click.pass_context
def evaluate(ctx: click.Context, **params: Any) -> None:
    """Evaluate a backbone's weights as they are, without training: a leaderboard row of their own.

    The run is logged like a `dssl bench` run (params, tags, config.yaml, results.json), marked
    dssl.evaluation_only, with --label (or the init) as its method.
    """
    from dssl.errors import UsageError

    if params["label"] is not None and not params["label"].strip():
        raise UsageError("--label: expected a name for the weights, e.g. dinov2-vits14")
    flags = {"init": "backbone.init", "dataset": "dataset.name"}
    config = _resolve(ctx, params, flags)
    if params["dry_run"]:
        _print_config(config)
        return
    from dssl.runner import run_eval

    run_eval(config, host=host_from_context(ctx), label=params["label"])


#: Flags that may accompany ``--resume``: where the run is tracked, nothing that changes the run.
_RESUME_ALLOWED = {"resume", "tracking_uri"}


def _resume(ctx: click.Context, params: dict[str, object]) -> None:
    """``dssl bench --resume``: the run's own configuration, so any flag that would change it is refused."""
    from dssl.errors import UsageError

    flags = {p.name: max(p.opts, key=len) for p in ctx.command.params if p.name is not None}
    given = [
        flags.get(name, name)
        for name, value in params.items()
        if name not in _RESUME_ALLOWED and value not in (None, False, ())
    ]
    if given:
        raise UsageError(
            f"--resume continues the run with its own configuration; drop {', '.join(given)} "
            "(only --tracking-uri may be given)"
        )
    from dssl.runner import resume_bench

    tracking_uri = params["tracking_uri"]
    resume_bench(str(params["resume"]), host=host_from_context(ctx), tracking_uri=tracking_uri)  # type: ignore[arg-type]
