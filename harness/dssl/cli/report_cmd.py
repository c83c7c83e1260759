"""``dssl report``: plots and an HTML page for an experiment, a grid or a run, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import click

from dssl.cli.context import host_from_context


@click.command()
@click.argument("target", metavar="EXPERIMENT|RUN")
@click.option("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite ./mlflow.db).")
@click.option(
    "--output",
    "output_dir",
    type=click.Path(file_okay=False),
    help="Folder for the files (default: dssl-runs/reports/<target>).",
)
@click.option(
    "--images",
    "num_images",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Validation images in the PCA and segmentation figures.",
)
@click.option("--no-log", is_flag=True, help="Write the files only; do not log them to MLflow.")
@click.pass_context
def report(
    ctx: click.Context, target: str, tracking_uri: str | None, output_dir: str | None, num_images: int, no_log: bool
) -> None:
    """Draw metric bars, training curves, PCA feature maps and segmentations of EXPERIMENT|RUN.

    A run id of a grid's parent run covers the grid's cells. The files (PNG + report.html) are logged to
    that run, or for an experiment to a new run tagged dssl.report, under the artifact folder report/.
    """
    from dssl.report.build import build_report
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    folder = Path(output_dir) if output_dir else Path("dssl-runs") / "reports" / target.replace("/", "_")
    files = build_report(
        target,
        tracking_uri=tracking_uri or default_tracking_uri(),
        output_dir=folder,
        host=host_from_context(ctx),
        num_images=num_images,
        log=not no_log,
        echo=lambda line: click.echo(line, err=True),
    )
    for line in files.skipped:
        click.echo(f"left out: {line}", err=True)
    click.echo(f"report: {files.page}")
    for name, path in files.images.items():
        click.echo(f"  {name}: {path}")
    if files.run_id:
        click.echo(f"logged to run {files.run_id} (artifacts {'report/'})")
