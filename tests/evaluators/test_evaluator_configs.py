"""Options models: validation, and that config modules stay torch- and sklearn-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dssl.evaluators.kmeans_seg_config import KMeansSegOptions
from dssl.evaluators.linear_seg_config import LinearSegOptions
from pydantic import ValidationError

HARNESS = Path(__file__).resolve().parents[2] / "harness"


def test_defaults() -> None:
    lin = LinearSegOptions()
    assert (lin.optimizer, lin.lr, lin.epochs, lin.batchnorm, lin.input_size, lin.mask_size) == (
        "adamw",
        1e-3,
        20,
        False,
        None,
        None,
    )
    km = KMeansSegOptions()
    assert (km.seeds, km.pca_dim, km.standardize, km.max_fit_points) == ([0, 1, 2], None, False, None)
    assert lin.absent_classes == km.absent_classes == "exclude_no_gt"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (LinearSegOptions, {"lr": 0}),
        (LinearSegOptions, {"optimizer": "adam"}),
        (LinearSegOptions, {"unknown": 1}),
        (LinearSegOptions, {"input_size": (448, 0)}),
        (KMeansSegOptions, {"seeds": []}),
        (KMeansSegOptions, {"seeds": [1, 1]}),
        (KMeansSegOptions, {"seeds": [-1]}),
        (KMeansSegOptions, {"pca_dim": 0}),
        (KMeansSegOptions, {"absent_classes": "nan"}),
    ],
)
def test_invalid_values_are_rejected(model: type, data: dict) -> None:
    with pytest.raises(ValidationError):
        model(**data)


def test_sizes_from_yaml_lists() -> None:
    assert LinearSegOptions(input_size=[448, 448], mask_size=100).input_size == (448, 448)


def test_config_modules_do_not_import_torch_or_sklearn() -> None:
    code = (
        "import sys, dssl.evaluators, dssl.evaluators.linear_seg_config, dssl.evaluators.kmeans_seg_config, "
        "dssl.evaluators.linear_seg_neco_config, dssl.evaluators.overcluster_config, "
        "dssl.evaluators.hummingbird_config, dssl.evaluators.knn_config, dssl.evaluators.linear_cls_config, "
        "dssl.evaluators.diagnostics_config, dssl.evaluators.overcluster_neco_config; "
        "bad = [m for m in ('torch', 'sklearn', 'scipy', 'numpy', 'faiss') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(HARNESS)})


def test_dense_evaluators_refuse_datasets_without_masks():
    import pytest
    from dssl.errors import ConfigError
    from dssl.evaluators.extraction import dataset_info

    class Images:
        has_masks = False
        num_classes = 3

    with pytest.raises(ConfigError, match="has no masks"):
        dataset_info(Images(), "val")
