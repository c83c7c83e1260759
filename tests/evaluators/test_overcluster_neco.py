"""NeCo's eval_overcluster (faiss) against the reference pipeline written out step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dssl.data.normalize import normalize
from dssl.errors import ConfigError
from dssl.evaluators.overcluster_neco_config import OverclusterNecoOptions
from pydantic import ValidationError
from scipy.optimize import linear_sum_assignment
from seg_synthetic import BlockDataset, class_features

faiss = pytest.importorskip("faiss")


@pytest.fixture(autouse=True)
def _one_faiss_thread():
    # OpenMP threads spin on a loaded 2-core machine (40x slower); one thread gives the same clusters.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _neco_miou(gt: np.ndarray, pred: np.ndarray, num_pred: int, num_gt: int) -> float:
    """``PredsmIoU.compute_miou`` of vpariza/NeCo experiments/utils.py: Hungarian on ``1 - IoU`` when
    ``num_pred == num_gt`` (unmatched predictions -> 0), otherwise greedy precision many-to-one; the mean
    over every ground-truth class with ``max(denominator, 1e-8)``."""

    def score(c1: int, c2: int, precision: bool) -> float:
        tp = np.sum((gt == c1) & (pred == c2))
        fp = np.sum((gt != c1) & (pred == c2))
        fn = np.sum((gt == c1) & (pred != c2))
        return tp / max(tp + fp, 1e-8) if precision else tp / max(tp + fp + fn, 1e-8)

    reordered = np.zeros(len(pred))
    if num_pred == num_gt:
        iou = np.array([[score(g, p, False) for p in range(num_pred)] for g in range(num_gt)])
        rows, cols = linear_sum_assignment(1 - iou)
        for target, source in zip(rows, cols, strict=True):
            reordered[pred == source] = target
    else:
        for p in range(num_pred):
            best, best_score = 0, None
            for g in range(num_gt):
                s = score(g, p, True)
                if best_score is None or s > best_score:
                    best, best_score = g, s
            reordered[pred == p] = best
    jac = []
    for c in range(num_gt):
        tp = np.sum((gt == c) & (reordered == c))
        fp = np.sum((gt != c) & (reordered == c))
        fn = np.sum((gt == c) & (reordered != c))
        jac.append(tp / max(tp + fp + fn, 1e-8))
    return float(np.mean(jac))


def _reference(ds: BlockDataset, fn, ks: list[int], seeds: list[int], pca_dim: int, input_size: int, mask: int):
    """eval_overcluster.py: resize, tokens, StandardScaler + faiss.PCAMatrix, faiss.Kmeans per seed, 100x100."""
    images = F.interpolate(ds.images, size=(input_size, input_size), mode="bilinear", antialias=True)
    masks = F.interpolate(ds.masks[:, None].double(), size=(input_size, input_size), mode="nearest")
    masks = F.interpolate(masks, size=(mask, mask), mode="nearest").long()  # (N, 1, m, m)
    tokens = fn(normalize(images))  # (N, h, w, D), one batch
    n, h, w, d = tokens.shape
    x = tokens.reshape(-1, d).numpy().astype(np.float32)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)  # StandardScaler (population std)
    pca = faiss.PCAMatrix(d, pca_dim)
    pca.train(x)
    x = pca.apply_py(x)
    out = {}
    for k in ks:
        mious = []
        for seed in seeds:
            km = faiss.Kmeans(pca_dim, k, niter=100, nredo=5, verbose=False, gpu=False, spherical=False, seed=seed)
            km.train(x)
            _, labels = km.index.search(x, 1)
            clusters = torch.from_numpy(labels.reshape(n, 1, h, w)).float()
            clusters = F.interpolate(clusters, size=(mask, mask), mode="nearest").long()
            valid = masks != ds.ignore_index
            mious.append(_neco_miou(masks[valid].numpy(), clusters[valid].numpy(), k, ds.num_classes))
        out[k] = 100.0 * float(np.mean(mious))
    return out


def test_matches_neco_eval_overcluster(val_ds: BlockDataset) -> None:
    from dssl.evaluators.overcluster_neco import OverclusterNecoEvaluator

    fn = class_features(4, dim=16, noise=1.2)
    opts = OverclusterNecoOptions(
        ks=["num_classes", 9], seeds=[0, 1, 2], pca_dim=6, input_size=32, mask_size=20, feature_batch_size=64
    )
    result = OverclusterNecoEvaluator(opts).evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="blocks")
    expected = _reference(val_ds, fn, [4, 9], [0, 1, 2], pca_dim=6, input_size=32, mask=20)
    assert result.protocol_id == "overcluster_neco@1"
    assert result.metrics["miou_k4"].value == pytest.approx(expected[4], abs=1e-9)
    assert result.metrics["miou_k9"].value == pytest.approx(expected[9], abs=1e-9)
    assert result.metrics["miou_k4"].n == 3
    s = result.settings
    assert s["ks"] == [4, 9] and s["matching_per_k"] == ["hungarian", "many_to_one"]
    assert (s["kmeans_impl"], s["absent_classes"], s["mask_size"]) == ("faiss", "zero", [20, 20])


def test_defaults_are_the_published_protocol() -> None:
    opts = OverclusterNecoOptions()
    assert (opts.input_size, opts.mask_size, opts.pca_dim, opts.standardize) == (448, 100, 50, True)
    assert (opts.ks, opts.seeds, opts.n_init, opts.max_iter) == (["num_classes", 500], [0, 1, 2, 3, 4], 5, 100)
    assert (opts.init, opts.absent_classes) == ("random", "zero")


def test_k_below_the_number_of_classes_and_fixed_settings_are_refused(val_ds: BlockDataset) -> None:
    from dssl.evaluators.overcluster_neco import OverclusterNecoEvaluator

    ev = OverclusterNecoEvaluator(OverclusterNecoOptions(ks=[3], seeds=[0], input_size=16, mask_size=16))
    with pytest.raises(ConfigError, match="below the number of classes"):
        ev.evaluate(features=class_features(4), train=val_ds, val=val_ds, dataset_name="blocks")
    with pytest.raises(ValidationError, match="fixed to NeCo"):
        OverclusterNecoOptions(init="k-means++")


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from dssl.evaluators import overcluster_neco

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ConfigError, match=r"pip install dssl-bench\[faiss\]"):
        overcluster_neco.OverclusterNecoEvaluator()
