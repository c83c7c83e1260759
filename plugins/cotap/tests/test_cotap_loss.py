"""CoTAP loss: AP by sorting, independent loop computation, chunked vs unchunked, targets, masking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dssl_cotap.cotap_loss import CoTAPLoss, continuous_target_ap, continuous_targets


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sorted_ap(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision of one query by sorting (binary labels, no ties)."""
    order = scores.argsort(descending=True)
    hits = labels[order]
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def _loop_ap(s: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """The graded AP formula written with explicit sums over k != j (independent of the vectorised code)."""
    out = []
    for i in range(s.shape[0]):
        num = 0.0
        for j in range(s.shape[1]):
            r_all, r_pos = 1.0, float(y[i, j])
            for k in range(s.shape[1]):
                if k != j:
                    d = 1.0 / (1.0 + torch.exp(-(s[i, k] - s[i, j]) / tau).item())
                    r_all += d
                    r_pos += float(y[i, k]) * d
            num += float(y[i, j]) * r_pos / r_all
        out.append(num / float(y[i].sum()))
    return torch.tensor(out)


def test_binary_targets_small_temperature_match_sorted_ap():
    g = torch.Generator().manual_seed(0)
    q, m = 12, 30
    # distinct scores at least 1/m apart, so that sigmoid((gap)/tau) is a step at tau = 1e-3
    scores = torch.stack([torch.randperm(m, generator=g).float() / m for _ in range(q)])
    labels = (torch.rand(q, m, generator=g) < 0.3).float()
    labels[:, 0] = 1.0
    ap = continuous_target_ap(scores, labels, temperature=1e-3)
    expected = torch.tensor([_sorted_ap(scores[i], labels[i]) for i in range(q)])
    torch.testing.assert_close(ap, expected, atol=1e-3, rtol=0)
    assert (expected < 0.999).any()  # the case is not trivial


def test_perfect_ranking_gives_ap_one_and_reversed_is_low():
    scores = torch.linspace(1.0, -1.0, 10)[None]
    labels = torch.tensor([[1.0, 1.0, 1.0, 0, 0, 0, 0, 0, 0, 0]])
    assert float(continuous_target_ap(scores, labels, temperature=1e-3)) == pytest.approx(1.0, abs=1e-6)
    assert float(continuous_target_ap(-scores, labels, temperature=1e-3)) < 0.4
    # graded targets: the ranking sorted by target scores at least as high as any permutation of it
    g = torch.Generator().manual_seed(7)
    graded = torch.rand(1, 10, generator=g)
    best = float(continuous_target_ap(graded, graded, temperature=1e-4))
    for _ in range(50):
        perm = torch.randperm(10, generator=g)
        assert float(continuous_target_ap(graded[:, perm], graded, temperature=1e-4)) <= best + 1e-6


def test_graded_ap_matches_independent_loop():
    g = torch.Generator().manual_seed(1)
    s, y = torch.randn(4, 7, generator=g), torch.rand(4, 7, generator=g)
    for tau in (0.05, 0.5):
        torch.testing.assert_close(continuous_target_ap(s, y, temperature=tau), _loop_ap(s, y, tau), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            continuous_target_ap(s, y, temperature=tau, chunk_size=5), _loop_ap(s, y, tau), atol=1e-5, rtol=0
        )


def test_invariant_to_shifting_scores_linear_in_target_scale():
    g = torch.Generator().manual_seed(2)
    s, y = torch.randn(3, 9, generator=g), torch.rand(3, 9, generator=g)
    base = continuous_target_ap(s, y, temperature=0.1)
    torch.testing.assert_close(continuous_target_ap(s + 3.0, y, temperature=0.1), base, atol=1e-5, rtol=0)
    # Rpos scales with the targets, Rall does not: AP is homogeneous of degree 1 in Y (max AP = max target)
    torch.testing.assert_close(continuous_target_ap(s, 0.5 * y, temperature=0.1), 0.5 * base, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 100, 10**6])
def test_chunked_equals_unchunked_value_and_gradient(chunk):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(20, 16, generator=g, dtype=torch.float32)
    y = continuous_targets(torch.randn(20, 16, generator=g), "clamp")  # many exact zeros: skipped rows
    s_ref, s_chk = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    w = torch.rand(20, generator=g)
    ref = continuous_target_ap(s_ref, y, temperature=0.05, chunk_size=None)
    chk = continuous_target_ap(s_chk, y, temperature=0.05, chunk_size=chunk)
    torch.testing.assert_close(chk, ref, atol=1e-6, rtol=0)
    (ref * w).sum().backward()
    (chk * w).sum().backward()
    torch.testing.assert_close(s_chk.grad, s_ref.grad, atol=1e-6, rtol=0)


def test_float32_under_autocast():
    s = torch.randn(6, 8, dtype=torch.bfloat16)
    y = torch.rand(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ap = continuous_target_ap(s, y, temperature=0.05)
        out = CoTAPLoss()(torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 3, 4), torch.randn(2, 5, 4))
    assert ap.dtype == torch.float32 and out["loss"].dtype == torch.float32


def test_target_options():
    t = torch.tensor([[0.9, 0.5, -0.2]])
    soft = continuous_targets(t, "softmax_max", temperature=0.1)
    expected = torch.softmax(t / 0.1, dim=-1) / torch.softmax(t / 0.1, dim=-1).amax(dim=-1, keepdim=True)
    torch.testing.assert_close(soft, expected)
    assert float(soft.max()) == 1.0
    torch.testing.assert_close(continuous_targets(t, "clamp"), torch.tensor([[0.9, 0.5, 0.0]]))


def test_queries_without_a_real_match_are_masked_on_the_raw_teacher_similarity():
    # Default targets (softmax_max): every query's best *target* is 1, so only the raw similarity can tell
    # that query 1 of u (orthogonal to every patch of v) has no match.
    loss_fn = CoTAPLoss(min_target=0.05)
    tu = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    tv = torch.tensor([[[1.0, 0.0], [1.0, 0.01]]])
    _, _, y = loss_fn.direction(tu, tv, tu, tv)
    assert float(y[0, 0].max()) == 1.0  # its neighbour's best target: 1 (unmasked)
    out = loss_fn(torch.randn(1, 2, 2), torch.randn(1, 2, 2), tu, tv)
    assert float(out["masked"]) == pytest.approx(0.25)
    # The raw best similarity of query 0 of u is 1.0, of query 1 about 0.01: a threshold between keeps one.
    _, mask, _ = CoTAPLoss(min_target=0.5).direction(tu, F.normalize(tv, dim=-1), tu, F.normalize(tv, dim=-1))
    assert mask.tolist() == [[True, False]]


def test_geometry_is_ignored_by_default():
    g = torch.Generator().manual_seed(4)
    su, sv, tu, tv = (F.normalize(torch.randn(2, 4, 8, generator=g), dim=-1) for _ in range(4))
    index, valid = torch.tensor([[1, 0, 3, 2], [0, 1, 2, 3]]), torch.ones(2, 4, dtype=torch.bool)
    loss_fn = CoTAPLoss(min_target=-1.0)
    assert loss_fn.geometry == "none"
    with_geometry = loss_fn.direction(su, sv, tu, tv, (index, valid))
    without = loss_fn.direction(su, sv, tu, tv)
    for a, b in zip(with_geometry, without, strict=True):
        assert torch.equal(a, b)


def test_geometry_positive_and_mask():
    g = torch.Generator().manual_seed(4)
    su, sv, tu, tv = (F.normalize(torch.randn(2, 4, 8, generator=g), dim=-1) for _ in range(4))
    index = torch.tensor([[1, 0, 3, 2], [0, 1, 2, 3]])
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    positive = CoTAPLoss(geometry="positive", target="clamp", min_target=-1.0)
    _, _, y = positive.direction(su, sv, tu, tv, (index, valid))
    assert y[0, 0, 1] == 1.0 and y[0, 1, 0] == 1.0 and y[1, 3, 3] == 1.0
    masked = CoTAPLoss(geometry="mask", target="softmax_max", min_target=-1.0)
    _, mask, _ = masked.direction(su, sv, tu, tv, (index, valid))
    assert mask.tolist() == valid.tolist()


def test_candidate_subsampling_keeps_m_candidates():
    loss_fn = CoTAPLoss(num_candidates=3)
    g = torch.Generator().manual_seed(5)
    su, sv, tu, tv = (torch.randn(2, 5, 8, generator=g) for _ in range(4))
    _, _, y = loss_fn.direction(su, sv, tu, tv)
    assert y.shape == (2, 5, 3)


def test_gradient_flows_to_student_not_teacher():
    g = torch.Generator().manual_seed(6)
    su, sv = torch.randn(2, 4, 8, generator=g, requires_grad=True), torch.randn(2, 5, 8, generator=g)
    sv.requires_grad_(True)
    tu, tv = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 5, 8, requires_grad=True)
    CoTAPLoss(rank_temp=0.1)(su, sv, tu, tv)["loss"].backward()
    assert su.grad.abs().sum() > 0 and sv.grad.abs().sum() > 0
    assert tu.grad is None and tv.grad is None
