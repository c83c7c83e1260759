"""PaKA objective: ROI alignment geometry, gradient flow, teacher, training on embedded data, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from dssl.augment.multicrop import collate_views
from dssl.data.embedded import build_embedded
from dssl.data.embedded_config import EmbeddedOptions
from dssl.host import get_host
from dssl.testing.conformance import build_backbone
from dssl_paka.augmentation import PaKACrop
from dssl_paka.augmentation_config import PaKACropOptions
from dssl_paka.objective import PaKAObjective, align_pair


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _smooth_image(size: int = 96) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(2.1 * xs + 0.3), 0.5 + 0.4 * torch.cos(1.7 * ys), 0.3 + 0.5 * xs * ys])


def test_roi_alignment_matches_features_of_an_equivariant_backbone():
    # A fixed per-pixel colour embedding (1x1 conv) is equivariant to crops, resizes and flips by construction.
    embed = torch.nn.Conv2d(3, 8, 1)
    torch.manual_seed(0)
    aug = PaKACrop(PaKACropOptions(global_size=64, local_size=32, n_local=4, hflip_p=0.5))
    generator = torch.Generator().manual_seed(0)
    batch = collate_views([aug(_smooth_image(), generator=generator) for _ in range(8)])
    assert batch.clean is not None and bool(batch.flips.any()) and not bool(batch.flips.all())
    errors, flipped_errors = [], []
    with torch.no_grad():
        for v in range(2, 6):
            g = (v - 2) % 2
            t_map, s_map = embed(batch.clean[g]), embed(batch.clean[v])
            args = (batch.boxes[:, g], batch.flips[:, g], s_map, batch.boxes[:, v])
            t, s, ok = align_pair(t_map, *args, batch.flips[:, v], grid=7)
            assert bool(ok.all())
            errors.append((t - s).abs().max())
            t, s, _ = align_pair(t_map, *args, ~batch.flips[:, v], grid=7)  # wrong geometry must be caught
            flipped_errors.append((t - s).abs().max())
    scale = float(embed(batch.clean[0]).detach().std())
    assert max(errors) < 0.05 * scale
    assert max(flipped_errors) > 0.2 * scale


def test_pairs_without_enough_overlap_are_masked():
    maps = torch.randn(2, 4, 4, 4)
    boxes_t = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    boxes_s = torch.tensor([[0.25, 0.25, 0.75, 0.75], [0.49, 0.0, 0.99, 0.5]])  # second overlaps 0.01 wide
    flips = torch.zeros(2, dtype=torch.bool)
    _, _, ok = align_pair(maps, boxes_t, flips, maps, boxes_s, flips, grid=3)
    assert ok.tolist() == [True, False]


def _objective(seed: int = 0, **options) -> PaKAObjective:
    torch.manual_seed(seed)
    backbone = build_backbone(get_host().get("backbone", "vit_t16"), img_size=32)
    return PaKAObjective(backbone, {"out_dim": 64, "hidden_dim": 64, "roi_grid": 4, **options}, total_steps=20)


def _embedded_batch(seed: int = 0, n: int = 4):
    data = build_embedded(EmbeddedOptions(size=64, num_train=n, num_val=1), split="train")
    aug = PaKACrop(PaKACropOptions(global_size=32, local_size=32, n_local=2, global_scale=(0.5, 1.0)))
    generator = torch.Generator().manual_seed(seed)
    return collate_views([aug(data[i]["image"], generator=generator) for i in range(n)])


def test_gradients_reach_backbone_and_head_never_the_teacher():
    objective = _objective()
    out = objective(_embedded_batch(), step=0)
    out["loss"].backward()
    assert math.isfinite(float(out["loss"].detach())) and float(out["valid_pairs"]) > 0
    assert all(p.grad is None for p in objective.teacher.parameters())
    assert all(not p.requires_grad for p in objective.teacher.parameters())
    head_grads = [p.grad for p in objective.head.parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in head_grads)
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in objective.backbone.parameters())


def test_param_groups_have_separate_learning_rates():
    objective = _objective(head_lr_scale=10.0, backbone_lr_scale=0.5)
    scales = {g["name"]: g["lr_scale"] for g in objective.param_groups()}
    assert scales["head_regularized"] == 10.0 and scales["backbone_regularized"] == 0.5


@pytest.mark.parametrize(
    "options",
    [
        {},
        pytest.param({"kernel_scope": "batch", "kernel": "rbf"}, marks=pytest.mark.slow),
        pytest.param({"form": "frobenius"}, marks=pytest.mark.slow),
    ],
)
def test_loss_decreases_on_embedded_data(options):
    objective = _objective(momentum_teacher=0.99, **options)
    optimizer = torch.optim.AdamW(objective.param_groups(), lr=1e-3)
    batch = _embedded_batch()
    losses = []
    for step in range(8):
        loss = objective(batch, step=step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step(step=step)
        losses.append(float(loss.detach()))
    # The Frobenius form is scale dependent (tiny at the projector's initial scale) and falls more slowly.
    assert losses[-1] < (0.85 if options.get("form") == "frobenius" else 0.7) * losses[0], losses


def test_same_seed_same_losses_and_teacher_moves_by_ema():
    a = _objective(seed=3)(_embedded_batch(seed=5), step=0)["loss"]
    b = _objective(seed=3)(_embedded_batch(seed=5), step=0)["loss"]
    assert torch.equal(a, b)
    objective = _objective()
    before = [p.clone() for p in objective.teacher.parameters()]
    with torch.no_grad():
        for p in objective.backbone.parameters():
            p.add_(0.1)
    objective.after_step(step=0)
    m = float(objective.momentum_schedule[0])
    moved = [(p - q).abs().max() for p, q in zip(objective.teacher["backbone"].parameters(), before, strict=False)]
    assert m == pytest.approx(0.9995) and float(moved[0]) == pytest.approx(0.1 * (1 - m), rel=1e-3)


def test_teacher_sees_clean_views_and_eval_backbone():
    objective = _objective()
    batch = _embedded_batch()
    seen = []
    hook = objective.teacher["backbone"].register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    objective(batch, step=0)
    hook.remove()
    assert torch.equal(seen[0], torch.cat(batch.clean[:2]))
    assert objective.eval_backbone() is objective.teacher["backbone"]
    assert _objective(evaluate="student").eval_backbone() is not None


def test_roi_sampling_ratio_averages_sub_samples_in_both_views():
    from dssl.augment.geometry import roi_align

    maps = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    boxes_t = torch.tensor([[0.0, 0.0, 0.8, 0.8], [0.1, 0.1, 1.0, 1.0]])
    boxes_s = torch.tensor([[0.2, 0.2, 0.9, 0.9], [0.0, 0.0, 0.7, 0.7]])
    flips = torch.tensor([False, True])
    t, s, _ = align_pair(maps, boxes_t, flips, maps, boxes_s, flips, grid=3, sampling_ratio=2)
    # Independently: a 6x6 one-sample grid over the same ROI, averaged over 2x2 blocks.
    from dssl.augment.geometry import overlap_box

    roi, _ = overlap_box(boxes_t, boxes_s)
    for aligned, boxes in ((t, boxes_t), (s, boxes_s)):
        fine = roi_align(maps, boxes, flips, roi, (6, 6))
        expected = fine.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2)).flatten(2).transpose(1, 2)
        torch.testing.assert_close(aligned, expected)
    one, _, _ = align_pair(maps, boxes_t, flips, maps, boxes_s, flips, grid=3)
    assert not torch.allclose(t, one)
    assert _objective(roi_sampling_ratio=2).options.roi_sampling_ratio == 2
