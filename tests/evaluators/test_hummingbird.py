"""Hummingbird dense retrieval against brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dssl.data.normalize import normalize
from dssl.evaluators.extraction import dataset_info
from dssl.evaluators.hummingbird import (
    HummingbirdEvaluator,
    knn_search,
    patch_soft_labels,
    reference_sampling_noise,
    select_memory_patches,
    transfer_labels,
)
from dssl.evaluators.hummingbird_config import HummingbirdOptions
from scipy.optimize import linear_sum_assignment
from seg_synthetic import GRID, BlockDataset, class_features, noise_features


def _brute_transfer(memory, labels, query, k, t):
    out = []
    for q in query:
        qn = q / q.norm()
        sims = sorted(((float(qn @ m), j) for j, m in enumerate(memory)), key=lambda s: -s[0])[:k]
        z = sum(math.exp(s / t) for s, _ in sims)
        out.append(sum(math.exp(s / t) / z * labels[j] for s, j in sims))
    return torch.stack(out)


@pytest.mark.parametrize("memory_chunk", [7, 1000])
def test_label_transfer_matches_brute_force(memory_chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    memory = F.normalize(torch.randn(50, 8, generator=g, dtype=torch.float64), dim=1)
    labels = torch.softmax(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=1)
    query = torch.randn(9, 8, generator=g, dtype=torch.float64) * 3.0  # queries are not normalised
    got = transfer_labels(memory, labels, query, k=30, temperature=0.02, memory_chunk_size=memory_chunk)
    torch.testing.assert_close(got.to(torch.float64), _brute_transfer(memory, labels, query, 30, 0.02))


def test_chunked_search_equals_one_block() -> None:
    g = torch.Generator().manual_seed(1)
    memory, query = torch.randn(200, 5, generator=g), torch.randn(17, 5, generator=g)
    s1, i1 = knn_search(memory, query, 30, memory_chunk_size=13)
    s2, i2 = knn_search(memory, query, 30, memory_chunk_size=10_000)
    torch.testing.assert_close(s1, s2)
    assert torch.equal(i1, i2)


def test_soft_labels_are_pixel_fractions_with_ignore_as_zero() -> None:
    mask = torch.tensor([[[1, 1, 2, 255], [1, 255, 2, 2]]])  # (1, 2, 4): two 2x2 patches
    soft = patch_soft_labels(mask, (1, 2), 3, 255)
    assert soft.shape == (1, 2, 3)
    torch.testing.assert_close(soft[0, 0], torch.tensor([0.25, 0.75, 0.0]))
    torch.testing.assert_close(soft[0, 1], torch.tensor([0.25, 0.0, 0.75]))


def test_memory_selection_prefers_rare_classes_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    soft = torch.zeros(2, 6, 4)
    cls = torch.randint(0, 4, (2, 6), generator=g)
    soft.scatter_(2, cls[..., None], 1.0)
    soft[0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    chosen = select_memory_patches(soft, 3)
    for b in range(2):
        present = [{c for c in range(4) if soft[b, n, c] > 0} for n in range(6)]
        freq = {c: sum(c in p for p in present) for c in range(4)}
        scores = [sum(freq[c] for c in p) for p in present]
        expected = sorted(range(6), key=lambda n: (scores[n], n))[:3]
        assert chosen[b].tolist() == expected


def test_clean_features_score_100_and_settings(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    calls: list[tuple] = []
    opts = HummingbirdOptions(memory_size=16 * 8, mask_size=4)
    result = HummingbirdEvaluator(opts).evaluate(
        features=class_features(4),
        train=train_ds,
        val=val_ds,
        dataset_name="blocks",
        progress=lambda *a: calls.append(a),
    )
    assert result.protocol_id == "hummingbird@2"
    assert result.metrics["miou"].value == 100.0
    s = result.settings
    assert (s["memory_patches"], s["patches_per_image"], s["num_neighbours"], s["temperature"]) == (128, 8, 30, 0.02)
    assert (s["matching"], s["absent_classes"], s["sampling_noise"]) == ("hungarian", "zero", "per_patch")
    assert s["augmentation"] == "none"
    assert s["search"] in ("torch-exact", "faiss-flat-ip")
    assert {c[0] for c in calls} == {"memory", "features/val", "retrieval"}


def test_noise_features_are_low_and_hungarian_is_recorded(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    opts = HummingbirdOptions(memory_size=None, matching="hungarian", search="torch", memory_block_images=5)
    result = HummingbirdEvaluator(opts).evaluate(
        features=noise_features(), train=train_ds, val=val_ds, dataset_name="blocks"
    )
    assert result.metrics["miou"].value < 50.0
    assert result.settings["matching"] == "hungarian" and result.settings["memory_patches"] == 16 * 16


def test_deterministic_and_leaves_global_rng(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    opts = HummingbirdOptions(memory_size=40, sampling_noise="per_patch", seed=3)
    fn = class_features(4, noise=1.5)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = HummingbirdEvaluator(opts).evaluate(features=fn, train=train_ds, val=val_ds, dataset_name="b")
    assert torch.equal(torch.rand(1), before)
    b = HummingbirdEvaluator(opts).evaluate(features=fn, train=train_ds, val=val_ds, dataset_name="b")
    assert a.metrics == b.metrics


# -- the reference's bounded memory and scoring, written out independently (open-hummingbird-eval 2.0.0) -------


def _reference_memory(ds: BlockDataset, fn, keep: int, batch_size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Per batch: ``rand(#non-empty patches)`` handed out image by image; per image the ``keep`` patches of
    smallest ``Σ_{c in patch} #patches-with-c · u`` (``hbird_eval._sample_features``), L2-normalised."""
    g = torch.Generator().manual_seed(seed)
    feats, labels, draws = [], [], []
    for first in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(first, min(len(ds), first + batch_size))]
        x = fn(normalize(torch.stack([it["image"] for it in items])))  # (B, h, w, D)
        masks = torch.stack([it["mask"] for it in items])
        masks = torch.where(masks == ds.ignore_index, 0, masks)
        b, h, w, d = x.shape
        ph, pw = masks.shape[1] // h, masks.shape[2] // w
        soft = torch.zeros(b, h * w, ds.num_classes)
        for i in range(b):
            for n in range(h * w):
                block = masks[i, (n // w) * ph : (n // w + 1) * ph, (n % w) * pw : (n % w + 1) * pw]
                for c in range(ds.num_classes):
                    soft[i, n, c] = float((block == c).sum()) / block.numel()
        r = torch.rand(b * h * w, generator=g)  # every patch holds a class after 255 -> 0: all non-empty
        draws.append(r)
        for i in range(b):
            present = [{c for c in range(ds.num_classes) if soft[i, n, c] > 0} for n in range(h * w)]
            freq = {c: sum(c in p for p in present) for c in range(ds.num_classes)}
            score = [sum(freq[c] for c in present[n]) * float(r[i * h * w + n]) for n in range(h * w)]
            for n in sorted(range(h * w), key=lambda n: score[n])[:keep]:
                feats.append(x[i].reshape(-1, d)[n] / x[i].reshape(-1, d)[n].norm())
                labels.append(soft[i, n])
    return torch.stack(feats), torch.stack(labels), torch.cat(draws)


def _reference_miou(memory, memory_labels, ds: BlockDataset, fn, k: int, t: float, batch_size: int) -> float:
    """Label transfer, bilinear upsampling, ``PredsmIoU.compute()``: Hungarian on ``1 - IoU`` (unmatched
    predictions -> 0) and the mean over every class with ``max(denominator, 1e-8)``."""
    c = ds.num_classes
    conf = np.zeros((c, c), dtype=np.int64)
    # The test's feature noise depends on the position in a batch: extract in the evaluator's batches.
    feats = torch.cat([fn(normalize(ds.images[i : i + batch_size])) for i in range(0, len(ds), batch_size)])
    for i in range(len(ds)):
        item = ds[i]
        x = feats[i]
        soft = _brute_transfer(memory.double(), memory_labels.double(), x.reshape(-1, x.shape[-1]).double(), k, t)
        maps = soft.T.reshape(1, c, GRID, GRID).float()
        pred = F.interpolate(maps, size=item["mask"].shape, mode="bilinear", align_corners=False).argmax(dim=1)[0]
        for gt_c, pred_c in zip(item["mask"].flatten().tolist(), pred.flatten().tolist(), strict=True):
            if gt_c != ds.ignore_index:
                conf[gt_c, pred_c] += 1
    iou = np.array(
        [[conf[g, p] / max(conf[g].sum() + conf[:, p].sum() - conf[g, p], 1e-8) for p in range(c)] for g in range(c)]
    )
    rows, cols = linear_sum_assignment(1.0 - iou)
    to_class = np.zeros(c, dtype=np.int64)
    to_class[cols] = rows
    jac = []
    for cls in range(c):
        tp = sum(conf[cls, p] for p in range(c) if to_class[p] == cls)
        fp = sum(conf[g, p] for g in range(c) for p in range(c) if to_class[p] == cls and g != cls)
        fn_ = conf[cls].sum() - tp
        jac.append(tp / max(tp + fp + fn_, 1e-8))
    return 100.0 * float(np.mean(jac))


def test_sampling_noise_is_one_draw_per_non_empty_patch_in_image_order() -> None:
    soft = torch.zeros(2, 3, 2)
    soft[0, 0, 0] = soft[0, 2, 1] = soft[1, 0, 0] = soft[1, 1, 1] = soft[1, 2, 0] = 1.0  # image 0 patch 1 empty
    noise = reference_sampling_noise(soft, torch.Generator().manual_seed(5))
    r = torch.rand(5, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(noise, torch.tensor([[r[0], 1.0, r[1]], [r[2], r[3], r[4]]]))
    # The empty patch keeps the reference's sentinel score and is never kept before a labelled one.
    assert select_memory_patches(soft, 2, noise)[0].tolist() == sorted([0, 2], key=lambda n: float(noise[0, n]))


def test_bounded_memory_and_miou_follow_the_reference(train_ds: BlockDataset, val_ds: BlockDataset) -> None:
    fn = class_features(4, noise=1.0)
    opts = HummingbirdOptions(memory_size=len(train_ds) * 5, feature_batch_size=6, search="torch", seed=4)
    ev = HummingbirdEvaluator(opts)
    memory, memory_labels, _ = ev._build_memory(fn, train_ds, dataset_info(train_ds, "train"), "cpu", None)
    ref_memory, ref_labels, draws = _reference_memory(train_ds, fn, 5, 6, seed=4)
    torch.testing.assert_close(memory, ref_memory)
    torch.testing.assert_close(memory_labels, ref_labels)
    # The per-patch draws change which patches are kept (one scalar per batch would keep the same ones).
    deterministic = HummingbirdEvaluator(opts.model_copy(update={"sampling_noise": "per_batch"}))
    old_memory, _, _ = deterministic._build_memory(fn, train_ds, dataset_info(train_ds, "train"), "cpu", None)
    assert not torch.equal(old_memory, memory) and len(draws) == len(train_ds) * GRID * GRID
    result = ev.evaluate(features=fn, train=train_ds, val=val_ds, dataset_name="blocks")
    expected = _reference_miou(ref_memory, ref_labels, val_ds, fn, 30, 0.02, batch_size=6)
    assert result.metrics["miou"].value == pytest.approx(expected, abs=1e-9)


def test_published_scoring_matches_classes_and_counts_absent_ones_zero() -> None:
    train, val = BlockDataset(8, seed=1), BlockDataset(6, seed=2)
    for ds in (train, val):
        ds.num_classes, ds.class_names = 5, [*ds.class_names, "never seen"]  # class 4: no pixel, no prediction
    train.masks = (train.masks + 1) % 4  # the memory labels every class as the next one: ids come out permuted
    fn = class_features(4)
    published = HummingbirdEvaluator(HummingbirdOptions(memory_size=None, mask_size=GRID)).evaluate(
        features=fn, train=train, val=val, dataset_name="b"
    )
    # Hungarian matching undoes the permutation; the unseen class scores 0 and stays in the mean.
    assert published.metrics["miou"].value == pytest.approx(100.0 * 4 / 5)
    unmatched = HummingbirdOptions(memory_size=None, mask_size=GRID, matching="none", absent_classes="exclude_no_gt")
    version_1 = HummingbirdEvaluator(unmatched).evaluate(features=fn, train=train, val=val, dataset_name="b")
    assert version_1.metrics["miou"].value == 0.0


def test_faiss_search_equals_torch_search() -> None:
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(3)
    memory, query = F.normalize(torch.randn(300, 8, generator=g), dim=1), torch.randn(20, 8, generator=g)
    s1, i1 = knn_search(memory, query, 30, use_faiss=True)
    s2, i2 = knn_search(memory, query, 30, use_faiss=False)
    torch.testing.assert_close(s1, s2)
    assert torch.equal(i1, i2)


def test_faiss_index_built_once_equals_built_per_search() -> None:
    pytest.importorskip("faiss")
    from dssl.evaluators.hummingbird import faiss_flat_index

    g = torch.Generator().manual_seed(4)
    memory, query = F.normalize(torch.randn(200, 8, generator=g), dim=1), torch.randn(40, 8, generator=g)
    index = faiss_flat_index(memory)
    for block in query.split(15):
        s1, i1 = knn_search(memory, block, 10, use_faiss=True, index=index)
        s2, i2 = knn_search(memory, block, 10, use_faiss=True)
        assert torch.equal(s1, s2) and torch.equal(i1, i2)


def test_soft_labels_of_many_classes_equal_pooled_one_hot() -> None:
    g = torch.Generator().manual_seed(5)
    masks = torch.randint(0, 152, (3, 32, 32), generator=g)
    masks[masks == 151] = 0  # ADE20K-style: 0 is the ignore index and a class id
    soft = patch_soft_labels(masks, (2, 2), 151, 0)
    pooled = F.adaptive_avg_pool2d(F.one_hot(masks, 151).permute(0, 3, 1, 2).float(), (2, 2))
    assert torch.equal(soft, pooled.flatten(2).transpose(1, 2))
