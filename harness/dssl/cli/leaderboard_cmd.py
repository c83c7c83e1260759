"""``dssl leaderboard`` and ``dssl ui``: browse finished runs in the MLflow store."""

from __future__ import annotations

import click


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option("--experiment", help="Only this experiment (default: all).")
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
def leaderboard(
    tracking_uri: str | None,
    experiment: str | None,
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
    """
    from dssl.catalogue import load_catalogue
    from dssl.tracking.leaderboard import collect_rows, filter_rows, reference_rows, render, sort_rows
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    rows = collect_rows(
        tracking_uri=uri, experiment=experiment, metric=metric, protocol=protocol, diagnostics=diagnostics
    )
    if reference:
        references = reference_rows([r.model_dump() for r in load_catalogue().references])
        rows += filter_rows(references, metric=metric, protocol=protocol)
    if not rows:
        click.echo(f"no finished runs with metrics in {uri}" + (f" (experiment {experiment})" if experiment else ""))
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
