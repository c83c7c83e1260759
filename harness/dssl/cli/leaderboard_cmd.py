"""``dssl leaderboard`` and ``dssl ui``: browse finished runs in the MLflow store."""

from __future__ import annotations

import click


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option("--experiment", help="Only this experiment (default: all; with --grid: the grid's).")
@click.option(
    "--grid",
    "grid_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Only the cells of this grid file as it resolves them today (the table dssl grid ends with): runs of "
    "the grid's earlier settings, which the experiment's leaderboard keeps as rows of their own, are left out.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --grid: the dssl grid --set overrides the grid was run with (repeatable).",
)
@click.option("--metric", help="Only this metric, e.g. linear_seg/miou.")
@click.option("--protocol", help="Only this protocol id, e.g. linear_seg or linear_seg@1.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--reference", is_flag=True, help="Add published numbers from registry.yaml (marked as such).")
@click.option("--diagnostics", is_flag=True, help="Include diagnostic evaluators (concentration, DSE).")
@click.option(
    "--all", "all_runs", is_flag=True, help="List the superseded runs (older runs of a seed) under their rows."
)
@click.option(
    "--log",
    "log",
    is_flag=True,
    help="Also write each experiment's leaderboard into it, for the MLflow UI: a table and description in its run "
    "'leaderboard' and, when dssl wrote it, the experiment's description.",
)
@click.pass_context
def leaderboard(
    ctx: click.Context,
    tracking_uri: str | None,
    experiment: str | None,
    grid_file: str | None,
    sets: tuple[str, ...],
    metric: str | None,
    protocol: str | None,
    fmt: str,
    reference: bool,
    diagnostics: bool,
    all_runs: bool,
    log: bool,
) -> None:
    """Runs grouped by configuration, mean ± std over seeds, one ranking per protocol version.

    A row holds runs that differ only in the seed; rows of one method that differ in a setting show it in a
    variant column. When a seed was run again, the latest run counts and the older one is superseded.
    With --grid FILE, only that grid's cells as it resolves them today, named by their labels.
    """
    from dssl.catalogue import load_catalogue
    from dssl.tracking.leaderboard import collect_rows, filter_rows, reference_rows, render, sort_rows
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    if sets and grid_file is None:
        raise click.UsageError("--set applies to a grid's cells: give the grid file with --grid")
    if grid_file is not None:
        if diagnostics or all_runs or log:
            raise click.UsageError("--grid shows the grid's current cells only: drop --diagnostics, --all and --log")
        from dssl.api import grid_leaderboard
        from dssl.cli.context import host_from_context

        rows = grid_leaderboard(
            grid_file, sets=sets, metric=metric, protocol=protocol, experiment=experiment, tracking_uri=uri,
            host=host_from_context(ctx),
        )  # fmt: skip
    else:
        rows = collect_rows(
            tracking_uri=uri, experiment=experiment, metric=metric, protocol=protocol, diagnostics=diagnostics
        )
    if reference:
        references = reference_rows([r.model_dump() for r in load_catalogue().references])
        rows += filter_rows(references, metric=metric, protocol=protocol)
    if not rows:
        if grid_file is not None:
            click.echo(f"no finished runs of the cells of {grid_file} in {uri}")
        else:
            where = f" (experiment {experiment})" if experiment else ""
            click.echo(f"no finished runs with metrics in {uri}{where}")
        return
    output = render(sort_rows(rows), fmt, all_runs=all_runs)  # type: ignore[arg-type]
    if output:
        click.echo(output)
    if log:
        _log_leaderboards(uri, experiment, metric=metric, protocol=protocol, diagnostics=diagnostics)


def _log_leaderboards(uri: str, experiment: str | None, **filters: object) -> None:
    """``--log``: each experiment (or the one named) gets its own leaderboard, with the filters shown."""
    from mlflow import MlflowClient

    from dssl.tracking.browse import log_leaderboard
    from dssl.tracking.leaderboard import collect_rows

    names = [experiment] if experiment else [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    for name in names:
        rows = collect_rows(tracking_uri=uri, experiment=name, **filters)  # type: ignore[arg-type]
        if rows:
            run_id = log_leaderboard(uri, name, rows)
            click.echo(f"leaderboard logged to experiment {name!r}: run {run_id} (table leaderboard.json)", err=True)


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option("--port", type=int, default=5000, show_default=True)
def ui(tracking_uri: str | None, port: int) -> None:
    """Open the MLflow UI for the same store on 127.0.0.1 and print its URL."""
    from dssl.tracking.mlflow_tracker import default_tracking_uri
    from dssl.tracking.ui import launch_ui

    launch_ui(tracking_uri or default_tracking_uri(), port=port)
