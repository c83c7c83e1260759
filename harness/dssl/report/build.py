"""Build a report: figures and ``report.html`` in a folder, logged as MLflow artifacts under ``report/``."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dssl.host import PluginHost
from dssl.report.runs import REPORT_TAG, method_of, metric_groups, representatives, select_runs
from dssl.tracking.leaderboard import logged_settings

#: Artifact folder of the report in MLflow.
ARTIFACT_DIR = "report"


@dataclass
class ReportFiles:
    """What :func:`build_report` wrote.

    Attributes:
        folder: The output folder.
        page: ``report.html``.
        images: Every PNG, by figure name (``metrics``, ``training``, ``pca``, ``segmentation``).
        run_id: The MLflow run the report was logged to.
        skipped: Runs left out of the dense figures, with the reason.
    """

    folder: Path
    page: Path
    images: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    skipped: list[str] = field(default_factory=list)


def build_report(
    target: str,
    *,
    tracking_uri: str,
    output_dir: Path,
    host: PluginHost,
    num_images: int = 6,
    probe_images: int = 128,
    probe_epochs: int = 10,
    log: bool = True,
    echo: Callable[[str], None] = lambda message: None,
) -> ReportFiles:
    """Draw the report of ``target`` (a run id, a grid's parent run id, or an experiment name).

    Args:
        target: What to report on; a grid's parent run covers its cells.
        tracking_uri: MLflow tracking URI.
        output_dir: Folder the files are written to (created).
        host: Plugin host (to rebuild backbones and datasets).
        num_images: Validation images shown in the PCA and segmentation figures.
        probe_images: Evaluation train images the figures' linear probe is fit on.
        probe_epochs: Epochs of that probe.
        log: Log the files to MLflow (to the target run, or a new ``report`` run of the experiment).
        echo: Receives one line per step.
    """
    from mlflow import MlflowClient

    from dssl.report import dense, figures

    client = MlflowClient(tracking_uri=tracking_uri)
    selection = select_runs(client, target)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder=output_dir, page=output_dir / "report.html")
    echo(f"report on {selection.title}: {len(selection.runs)} runs")

    settings = logged_settings(client)
    files.images["metrics"] = figures.metric_bars(metric_groups(selection.runs, settings), output_dir / "metrics.png")
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run in selection.runs:
        label = f"{method_of(run)} {run.data.params['backbone']} s{run.data.params.get('seed', '?')}"
        for key in sorted(k for k in run.data.metrics if k.startswith("train/") and k != "train/lr"):
            history = client.get_metric_history(run.info.run_id, key)
            curves.setdefault(key, {})[label] = [(m.step, m.value) for m in history]
    files.images["training"] = figures.training_curves(curves, output_dir / "training.png")

    backbones: list[dense.RunBackbone] = []
    for run, label in representatives(selection.runs, settings):
        try:
            backbones.append(dense.load_run_backbone(client, run, host, label))
        except (FileNotFoundError, ValueError) as exc:
            files.skipped.append(f"{label} ({run.info.run_id}): {exc}")
    if backbones:
        _dense_figures(backbones, files, num_images, probe_images, probe_epochs, echo)
    else:
        echo("no run has a logged backbone checkpoint: no PCA or segmentation figure")
    files.page.write_text(_page(selection.title, selection.runs, files), encoding="utf-8")
    if log:
        files.run_id = _log(client, selection, files)
    return files


def _dense_figures(
    backbones: list[Any],
    files: ReportFiles,
    num_images: int,
    probe_images: int,
    probe_epochs: int,
    echo: Callable[[str], None],
) -> None:
    from dssl.evaluators.extraction import dataset_info
    from dssl.report import dense, figures

    val = backbones[0].eval_val
    info = dataset_info(val, "val")
    indices = list(range(min(num_images, len(val))))
    images, masks = dense.images_and_masks(val, indices)
    inputs = [im.permute(1, 2, 0).clamp(0, 1).numpy() for im in images]
    truth = [dense.colorize(m, info.num_classes, info.ignore_index) for m in masks]
    pca_rows: list[tuple[str, list[Any]]] = [("input", inputs)]
    seg_rows: list[tuple[str, list[Any]]] = [("input", inputs), ("ground truth", truth)]
    for item in backbones:
        echo(f"dense figures: {item.label}")
        feats = dense.dense_features(item.backbone, images)
        pca_rows.append((item.label, dense.pca_rgb(feats, tuple(images.shape[-2:]))))
        probe = dense.linear_probe_predictions(item, images, probe_images, probe_epochs)
        seg_rows.append((f"{item.label}\nlinear probe", [dense.colorize(p, info.num_classes, None) for p in probe]))
        clusters = dense.kmeans_predictions(feats, masks, info.num_classes, info.ignore_index)
        seg_rows.append((f"{item.label}\nk-means", [dense.colorize(p, info.num_classes, None) for p in clusters]))
    files.images["pca"] = figures.image_grid(pca_rows, files.folder / "pca_feature_maps.png")
    files.images["segmentation"] = figures.image_grid(seg_rows, files.folder / "segmentations.png")


def _page(title: str, runs: list[Any], files: ReportFiles) -> str:
    esc = html.escape
    captions = {
        "metrics": "Evaluation metrics per method and backbone: mean over seeds, error bars ±1 std, n = runs. "
        "Each panel is one protocol id; numbers of different panels do not compare.",
        "training": "Training metrics against the optimisation step, one line per run.",
        "pca": "First three principal components of each backbone's frozen patch features (fit per backbone over "
        "the shown images) as RGB, on the same validation images.",
        "segmentation": "Ground truth, then per backbone a linear probe's and k-means + Hungarian matching's "
        "predictions (both refit for this figure on a small budget; the reported metrics are the evaluators').",
    }
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>dssl report: {esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
        "td,th{padding:2px 8px;text-align:left}</style></head><body>",
        f"<h1>dssl report: {esc(title)}</h1>",
        f"<p>{len(runs)} runs, drawn {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.</p>",
        "<table><tr><th>run</th><th>method</th><th>backbone</th><th>seed</th><th>steps</th></tr>",
    ]
    for run in runs:
        p = run.data.params
        parts.append(
            f"<tr><td>{esc(run.info.run_id)}</td><td>{esc(method_of(run))}</td><td>{esc(p.get('backbone', ''))}"
            f"</td><td>{esc(p.get('seed', ''))}</td><td>{esc(p.get('steps', ''))}</td></tr>"
        )
    parts.append("</table>")
    for name, path in files.images.items():
        parts += [f"<h2>{esc(name)}</h2>", f"<p>{esc(captions.get(name, ''))}</p>", f"<img src='{esc(path.name)}'>"]
    if files.skipped:
        parts.append("<h2>left out of the dense figures</h2><ul>")
        parts += [f"<li>{esc(line)}</li>" for line in files.skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _log(client: Any, selection: Any, files: ReportFiles) -> str:
    run_id = selection.attach_run_id
    created = run_id is None
    if created:
        run = client.create_run(
            selection.experiment_id, run_name=f"report-{selection.title}", tags={REPORT_TAG: "true"}
        )
        run_id = run.info.run_id
    for path in [files.page, *files.images.values()]:
        client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    if created:
        client.set_terminated(run_id, "FINISHED")
    return run_id
