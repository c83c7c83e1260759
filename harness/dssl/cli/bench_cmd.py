"""``dssl bench``: resolve one run configuration, train, evaluate, log to MLflow."""

from __future__ import annotations

import click

from dssl.cli.context import host_from_context


@click.command()
@click.option("--objective", help="Objective (SSL method), e.g. dino, cotap.")
@click.option("--backbone", help="Backbone alias from registry.yaml (vit_t16, vit_s16, ...) or a timm ViT name.")
@click.option("--dataset", help="Dataset to train on, e.g. embedded (generated, no download); also evaluated on.")
@click.option(
    "--eval-dataset",
    help="Dataset the evaluators use (its train and val splits); default: the training dataset "
    "(or the preset's evaluation set of it).",
)
@click.option("--augmentation", help="Augmentation; default: the objective's own.")
@click.option(
    "--eval",
    "evaluators",
    multiple=True,
    metavar="NAME",
    help="Evaluator (repeatable); default: all standard.",
)
@click.option("--init", help="Backbone weights: random, timm (cached), a checkpoint path, or runs:/RUN_ID.")
@click.option("--steps", type=int, help="Optimiser steps.")
@click.option("--batch-size", type=int, help="Images per step.")
@click.option("--seed", type=int, help="Random seed (CPU runs repeat exactly).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), help="Autocast precision.")
@click.option("--preset", help="Preset from registry.yaml (default: cpu without a GPU, gpu with one).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML run configuration.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any key, e.g. optim.lr=1e-3 (repeatable).",
)
@click.option("--output-dir", help="Folder for checkpoints and results.json.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder of the real datasets ($DSSL_DATA_ROOT).")
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option("--experiment", help="MLflow experiment name.")
@click.option("--run-name", help="MLflow run name.")
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
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
def bench(ctx: click.Context, **params: object) -> None:
    """Train a backbone with an objective, evaluate its frozen dense features, log the run.

    Precedence: defaults < preset < --config < flags < --set.
    """
    import yaml

    from dssl.config import resolve_config

    host = host_from_context(ctx)
    if params["resume"] is not None:
        _resume(ctx, params)
        return
    cli_keys = {
        "objective.name": params["objective"],
        "backbone.name": params["backbone"],
        "backbone.init": params["init"],
        "dataset.name": params["dataset"],
        "eval_dataset.name": params["eval_dataset"],
        "augmentation.name": params["augmentation"],
        "evaluators": list(params["evaluators"]) or None,  # type: ignore[call-overload]
        "optim.steps": params["steps"],
        "optim.batch_size": params["batch_size"],
        "seed": params["seed"],
        "device": params["device"],
        "precision": params["precision"],
        "preset": params["preset"],
        "output_dir": params["output_dir"],
        "data_root": params["data_root"],
        "tracking.uri": params["tracking_uri"],
        "tracking.experiment": params["experiment"],
        "tracking.run_name": params["run_name"],
        "tracking.enabled": False if params["no_tracking"] else None,
    }
    config = resolve_config(
        config_file=params["config_file"],  # type: ignore[arg-type]
        cli=cli_keys,
        sets=params["sets"],  # type: ignore[arg-type]
        host=host,
    )
    if params["dry_run"]:
        click.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)
        return
    if params["profile_steps"] is not None:
        from dssl.runner import profile_bench

        profile_bench(config, host=host, steps=int(params["profile_steps"]))  # type: ignore[call-overload]
        return
    from dssl.api import run

    run(config, host=host)


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
