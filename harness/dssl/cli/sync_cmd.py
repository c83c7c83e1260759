"""``dssl sync``: upload what runs queued in their folders while their tracking server was unreachable."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tracking-uri", help="Upload there instead of to the server each run recorded.")
def sync(run_folders: tuple[Path, ...], tracking_uri: str | None) -> None:
    """Upload the tracking records queued in RUN_FOLDER (dssl-runs/<time>/<run id>) to MLflow.

    A run whose server was unreachable keeps its params, metrics, tags and artifacts in
    RUN_FOLDER/tracking-queue; this replays them in order into the same MLflow run (its final status
    included). Uploading twice does no harm. Several folders may be given, e.g. dssl-runs/*/*.
    """
    from dssl.errors import RunFailedError
    from dssl.tracking.mlflow_tracker import sync_run_folder

    failures = []
    for folder in run_folders:
        try:
            run_id, uri, uploaded = sync_run_folder(folder, tracking_uri=tracking_uri)
        except RunFailedError as exc:
            failures.append(str(exc))
            click.secho(str(exc), fg="red", err=True)
            continue
        if uploaded:
            click.echo(f"{folder}: uploaded {uploaded} records to MLflow run {run_id} at {uri}")
        else:
            click.echo(f"{folder}: nothing to upload (MLflow run {run_id})")
    if failures:
        raise RunFailedError(f"{len(failures)} of {len(run_folders)} run folders could not be uploaded")
