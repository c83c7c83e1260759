"""Diagnostics: semantic concentration and DSE against straightforward computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dssl.evaluators.concentration import (
    ConcentrationEvaluator,
    effective_rank,
    pair_similarities,
    patch_majority_labels,
)
from dssl.evaluators.diagnostics_config import ConcentrationOptions, DSEOptions
from dssl.evaluators.dse import DSEEvaluator, centred_singular_sum, compute_dse, dse_kmeans
from seg_synthetic import BlockDataset, class_features, noise_features


def test_pair_similarities_match_pair_loops() -> None:
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(15, 4, generator=g), dim=1)
    y = torch.randint(0, 3, (15,), generator=g)
    intra, inter, n_intra, n_inter = 0.0, 0.0, 0, 0
    for i in range(15):
        for j in range(15):
            if i == j:
                continue
            s = float(x[i] @ x[j])
            if y[i] == y[j]:
                intra, n_intra = intra + s, n_intra + 1
            else:
                inter, n_inter = inter + s, n_inter + 1
    got = pair_similarities(x, y, 3)
    assert got[0] == pytest.approx(intra / n_intra) and got[1] == pytest.approx(inter / n_inter)


def test_effective_rank_reference_cases() -> None:
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0, rel=1e-6)
    assert effective_rank(torch.ones(6, 3)) == pytest.approx(1.0, rel=1e-6)


def test_majority_labels_drop_ignore_and_impure() -> None:
    mask = torch.tensor([[[1, 1, 255, 255], [1, 0, 255, 2]]])
    labels = patch_majority_labels(mask, (1, 2), 3, 255, min_purity=0.5)
    assert labels.tolist() == [[1, -1]]


def test_concentration_separates_clean_from_noise(val_ds: BlockDataset) -> None:
    ev = ConcentrationEvaluator(ConcentrationOptions())
    clean = ev.evaluate(features=class_features(4), train=val_ds, val=val_ds, dataset_name="b")
    noise = ev.evaluate(features=noise_features(), train=val_ds, val=val_ds, dataset_name="b")
    assert clean.protocol_id == "concentration@1" and clean.settings["diagnostic"] is True
    assert clean.metrics["intra_sim"].value == pytest.approx(1.0)
    assert clean.metrics["gap"].value > 0.5 > abs(noise.metrics["gap"].value)
    assert clean.metrics["effective_rank"].value < noise.metrics["effective_rank"].value
    assert clean.metrics["inter_sim"].direction == "lower"


def test_centred_singular_sum_and_kmeans() -> None:
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    # Centred: [[-1, 0], [1, 0]] -> singular values (sqrt 2, 0); denominator sqrt(max(1, 2)).
    assert centred_singular_sum(x) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(20, 3, generator=g, dtype=torch.float64) * 0.01 + c for c in (0.0, 5.0, 10.0)])
    _, labels = dse_kmeans(blobs, 3, 20, torch.Generator().manual_seed(1))
    assert sorted(torch.bincount(labels).tolist()) == [20, 20, 20]


def _dse_reference(x: torch.Tensor, local: int, glob: int, group: int, seed: int) -> dict[str, float]:
    """``compute_DSE`` of EldercatSAM/SSL-Degradation written out term by term, with the same k-means and
    permutation draws (generator order: image k-means, group k-means, then one permutation per image)."""
    x = F.normalize(x.to(torch.float64), dim=2)
    b, n, d = x.shape
    gen = torch.Generator().manual_seed(seed)
    flat = x.reshape(-1, d)
    avg = float((flat - flat.mean(0)).norm(dim=1).mean())

    def spreads(pts, lab):
        out = []
        for c in sorted(set(lab.tolist())):
            m = pts[lab == c]
            if len(m) > 1:
                out.append(float(torch.linalg.svdvals(m - m.mean(0)).sum()) / math.sqrt(max(len(m) - 1, d)))
        return out

    intra_img = []
    for i in range(b):
        _, lab = dse_kmeans(x[i], local, 20, gen)
        s = spreads(x[i], lab)
        intra_img.append(sum(s) / len(s) if s else 1.0)
    inter, ers_global = [], []
    for s in range(0, b, group):
        pts = x[s : s + group].reshape(-1, d)
        cen, lab = dse_kmeans(pts, glob, 20, gen)
        dists = []
        for p in range(len(pts)):
            dists.append(min(float((pts[p] - cen[c]).norm()) for c in range(len(cen)) if c != int(lab[p])))
        inter.append(sum(dists) / len(dists))
        ers_global += spreads(pts, lab)  # one list over all groups
    perm = [torch.randperm(n, generator=gen) for _ in range(b)]
    dims = []
    for p in range(n):
        sv = torch.linalg.svdvals(torch.stack([x[i, perm[i][p]] for i in range(b)]))
        q = sv / sv.sum()
        dims.append(math.exp(-float((q * (q + 1e-12).log()).sum())) / min(b, d))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    intra_batch = mean(ers_global) if ers_global else 1.0
    dse = mean(inter) / avg + mean(dims) - (intra_batch + mean(intra_img)) / (2 * avg)
    return {"dse": dse, "m_dim": mean(dims), "m_intra_batch": intra_batch, "m_intra_image": mean(intra_img)}


def test_dse_matches_term_by_term_reference() -> None:
    feats = torch.randn(10, 6, 5, generator=torch.Generator().manual_seed(3))
    got = compute_dse(feats, local_clusters=2, global_clusters=4, group_size=4, seed=7)
    for key, value in _dse_reference(feats, 2, 4, 4, 7).items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_dse_intra_batch_pools_clusters_of_groups_with_different_counts() -> None:
    g = torch.Generator().manual_seed(0)
    spread_group = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)  # 4 usable clusters
    # Two distinct patch values only: k-means finds two clusters (the others stay empty), both without spread.
    two_values = torch.randn(2, 5, generator=g, dtype=torch.float64)
    flat_group = two_values[torch.arange(24) % 2].reshape(4, 6, 5)
    feats = torch.cat([spread_group, flat_group])
    got = compute_dse(feats, local_clusters=2, global_clusters=4, group_size=4, seed=1)
    ref = _dse_reference(feats, 2, 4, 4, 1)
    assert got["m_intra_batch"] == pytest.approx(ref["m_intra_batch"], rel=1e-9)
    assert got["dse"] == pytest.approx(ref["dse"], rel=1e-9)
    # Pooled: 4 + 2 clusters, so the spread of the first group counts 4/6, not 1/2 (a mean of group means).
    gen = torch.Generator().manual_seed(1)
    x = F.normalize(feats, dim=2)
    for i in range(8):
        dse_kmeans(x[i], 2, 20, gen)  # the per-image k-means draw first
    _, lab = dse_kmeans(x[:4].reshape(-1, 5), 4, 20, gen)
    first = [centred_singular_sum(x[:4].reshape(-1, 5)[lab == c]) for c in lab.unique() if (lab == c).sum() > 1]
    assert len(first) == 4
    assert got["m_intra_batch"] == pytest.approx(sum(first) / 6, rel=1e-9)


def test_dse_effective_dimensionality_shuffles_patches_per_image() -> None:
    g = torch.Generator().manual_seed(0)
    # Each patch index carries its own fixed vector in every image (a position code): comparing the same
    # index across images sees rank one, the shuffled patches see the spread between positions.
    positions = torch.randn(16, 8, generator=g)
    feats = positions[None].expand(12, -1, -1) + 1e-3 * torch.randn(12, 16, 8, generator=g)
    got = compute_dse(feats, local_clusters=2, global_clusters=3, group_size=4, seed=2)
    assert got["m_dim"] == pytest.approx(_dse_reference(feats, 2, 3, 4, 2)["m_dim"], rel=1e-9)
    assert got["m_dim"] > 0.5  # the unshuffled matrices have effective rank ~1 of min(12, 8) = 8: ~0.13


def test_dse_evaluator_is_seeded_diagnostic(val_ds: BlockDataset) -> None:
    opts = DSEOptions(global_clusters=6, seed=2)
    fn = class_features(4, noise=0.5)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = DSEEvaluator(opts).evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="b")
    assert torch.equal(torch.rand(1), before)  # the global RNG is untouched
    b = DSEEvaluator(opts).evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="b")
    assert a.metrics == b.metrics and a.protocol_id == "dse@2" and a.settings["diagnostic"] is True
    assert math.isfinite(a.metrics["dse"].value)


@pytest.mark.parametrize("chunk_images", [1, 3])
def test_concentration_streamed_in_chunks_equals_one_pass(val_ds: BlockDataset, chunk_images: int) -> None:
    one_pass = ConcentrationEvaluator(ConcentrationOptions(chunk_images=10_000))
    streamed = ConcentrationEvaluator(ConcentrationOptions(chunk_images=chunk_images))
    fn = noise_features()
    a = one_pass.evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="b")
    b = streamed.evaluate(features=fn, train=val_ds, val=val_ds, dataset_name="b")
    for name, value in a.metrics.items():
        assert b.metrics[name].value == pytest.approx(value.value, rel=1e-12, abs=1e-15), name


def test_majority_labels_equal_the_one_hot_majority() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (20, 8, 8), generator=g)
    masks[masks == 3] = 255  # label 3 becomes ignore
    got = patch_majority_labels(masks, (2, 2), 3, 255, min_purity=0.4)
    labels = torch.where(masks == 255, 3, masks)
    frac = F.adaptive_avg_pool2d(F.one_hot(labels, 4).permute(0, 3, 1, 2).float(), (2, 2)).flatten(2).transpose(1, 2)
    purity, label = frac.max(dim=2)
    assert torch.equal(got, torch.where((label == 3) | (purity < 0.4), -1, label))


@pytest.mark.parametrize("block", [1, 7])
def test_dse_positions_in_blocks_equal_one_batched_call(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    import dssl.evaluators.dse as dse_module

    feats = torch.randn(6, 20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kept = feats.clone()
    monkeypatch.setattr(dse_module, "_POSITIONS_PER_BLOCK", 10_000)
    whole = compute_dse(feats, group_size=3, global_clusters=4, iters=4)
    monkeypatch.setattr(dse_module, "_POSITIONS_PER_BLOCK", block)
    assert compute_dse(feats, group_size=3, global_clusters=4, iters=4) == whole
    assert torch.equal(feats, kept)  # normalised in place on its own copy, never on the caller's tensor
