"""``dssl grid``: run a standardized comparison grid (objectives x backbones x datasets x seeds)."""

from __future__ import annotations

import click

from dssl.cli.context import host_from_context


@click.command()
@click.argument("grid_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="List the cells (label, seed, fingerprint, done/pending); run nothing.")
@click.option(
    "--estimate",
    is_flag=True,
    help="Time a few training steps of each distinct cell on this device and print per-cell and total "
    "device-hours and peak memory; run nothing.",
)
@click.option(
    "--estimate-steps",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Profiled steps per distinct cell (--estimate).",
)
@click.option(
    "--estimate-warmup",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Steps run before the profiled ones and not timed (--estimate).",
)
@click.option(
    "--estimate-batch",
    type=click.IntRange(min=1),
    help="Profile at this batch size and scale the time per step linearly to each cell's batch (--estimate; "
    "for a batch that does not fit this device).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override applied to every cell, after the grid file's own (repeatable), e.g. --set backbone.init=PATH.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cells run at once on this machine, each in its own process (log: <output_dir>/grid-logs/).",
)
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option("--experiment", help="MLflow experiment (default: the grid file's 'experiment', else dssl).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder of the real datasets ($DSSL_DATA_ROOT).")
@click.option(
    "--launcher",
    type=click.Choice(["local", "submitit"]),
    help="Run cells here (local) or one submitit job per cell (SLURM); default: the grid file's launcher.",
)
@click.option(
    "--cluster",
    type=click.Choice(["auto", "slurm", "local", "debug"]),
    help="submitit executor (auto: SLURM when available, else local processes).",
)
@click.option("--partition", help="SLURM partition (submitit).")
@click.option("--gpus", "gpus_per_node", type=click.IntRange(min=0), help="GPUs per job (submitit).")
@click.option("--timeout-min", type=click.IntRange(min=1), help="Wall-time limit per job in minutes (submitit).")
@click.pass_context
def grid(
    ctx: click.Context,
    grid_file: str,
    dry_run: bool,
    estimate: bool,
    estimate_steps: int,
    estimate_warmup: int,
    estimate_batch: int | None,
    sets: tuple[str, ...],
    parallel: int,
    tracking_uri: str | None,
    experiment: str | None,
    data_root: str | None,
    launcher: str | None,
    cluster: str | None,
    partition: str | None,
    gpus_per_node: int | None,
    timeout_min: int | None,
) -> None:
    """Run every cell of the grid FILE as a child run of one MLflow run, then print the grid leaderboard.

    Cells already FINISHED in the experiment with the same configuration fingerprint are skipped; a
    failing cell is recorded as a FAILED run and the others go on (exit code 1 at the end).
    """
    from dssl.grid.plan import plan_grid, render_dry_run
    from dssl.grid.runner import run_grid
    from dssl.grid.spec import load_grid
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    spec = load_grid(grid_file, sets=sets)
    host = host_from_context(ctx)
    uri = tracking_uri or default_tracking_uri()
    experiment = spec.experiment_name(experiment)
    name = spec.name or "grid"
    if estimate:
        from dssl.grid.estimate import estimate_grid, render_estimate

        cells = plan_grid(
            spec, host=host, tracking_uri=uri, experiment=experiment, data_root=data_root, source=grid_file
        )
        obj = ctx.find_root().obj or {}
        plugins = {"disabled": tuple(obj.get("disabled", ())), "strict": bool(obj.get("strict", False))}
        found = estimate_grid(
            cells, host=host, steps=estimate_steps, warmup=estimate_warmup, batch_size=estimate_batch, plugins=plugins
        )
        click.echo(render_estimate(found, name))
        return
    if dry_run:
        cells = plan_grid(
            spec, host=host, tracking_uri=uri, experiment=experiment, data_root=data_root, source=grid_file
        )
        click.echo(render_dry_run(cells, name))
        done = sum(c.status == "done" for c in cells)
        click.echo(f"{done} done, {len(cells) - done} pending (experiment {experiment} in {uri})")
        return
    obj = ctx.find_root().obj or {}
    flags = {"name": launcher, "cluster": cluster, "partition": partition, "gpus_per_node": gpus_per_node}
    flags["timeout_min"] = timeout_min
    launcher_spec = spec.launcher.model_copy(update={k: v for k, v in flags.items() if v is not None})
    run_grid(
        spec,
        host=host,
        tracking_uri=uri,
        experiment=experiment,
        data_root=data_root,
        parallel=parallel,
        source=grid_file,
        disabled=tuple(obj.get("disabled", ())),
        strict=bool(obj.get("strict", False)),
        launcher=launcher_spec,
    )
