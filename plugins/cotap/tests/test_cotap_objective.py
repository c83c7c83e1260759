"""CoTAP objective: DINO term reused, gradients, teacher untouched, pairs, filter registry, loss decreases."""

from __future__ import annotations

import pytest
import torch
from dssl.augment.multicrop import MultiCrop, collate_views
from dssl.augment.multicrop_config import MultiCropOptions
from dssl.backbones.vit import ViTBackbone
from dssl_cotap.config import CoTAPOptions
from dssl_cotap.filters import available_filters, build_filter
from dssl_cotap.objective import CoTAPObjective

TINY = {
    "out_dim": 64,
    "hidden_dim": 64,
    "bottleneck_dim": 32,
    "patch_dim": 32,
    "patch_hidden_dim": 64,
    "freeze_last_layer_steps": 0,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _embedded_batch(b: int = 4, seed: int = 0):
    from dssl.data.embedded import build_embedded
    from dssl.data.embedded_config import EmbeddedOptions

    data = build_embedded(EmbeddedOptions(size=64, num_train=b, num_val=1), split="train")
    mc = MultiCrop(MultiCropOptions(global_size=32, local_size=16, n_local=2))
    g = torch.Generator().manual_seed(seed)
    return collate_views([mc(data[i]["image"], generator=g) for i in range(b)])


def _objective(steps: int = 10, seed: int = 0, **options: object) -> CoTAPObjective:
    torch.manual_seed(seed)
    return CoTAPObjective(ViTBackbone("vit_t16", img_size=32), {**TINY, **options}, total_steps=steps)


def test_outputs_and_dino_term_is_dino_loss():
    obj = _objective()
    batch = _embedded_batch()
    out = obj(batch, step=0)
    assert {"loss", "dino_loss", "cotap_loss", "cotap_ap", "teacher_temp"} <= set(out)
    torch.testing.assert_close(out["loss"], out["dino_loss"] + out["cotap_loss"])
    assert obj.backbone.embed_dim == 192  # a width other than ViT-S's
    # λ = 0 is DINO
    zero = _objective(cotap_weight=0.0)(batch, step=0)
    torch.testing.assert_close(zero["loss"], zero["dino_loss"])


def test_gradients_reach_student_and_projector_never_the_teacher():
    from dssl.layers.multicrop_forward import forward_views

    obj = _objective(cotap_weight=1.0)
    batch = _embedded_batch()
    with torch.no_grad():
        t_out = forward_views(obj.teacher["backbone"], batch.crops[:2])
    s_out = forward_views(obj.backbone, batch.crops)
    obj._cotap(batch, s_out, t_out)["loss"].backward()  # the CoTAP term alone must train backbone and projector
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.backbone.parameters())
    assert all(p.grad is not None for p in obj.patch_head.parameters())
    assert all(not p.requires_grad and p.grad is None for p in obj.teacher.parameters())
    trainable = {id(p) for g in obj.param_groups() for p in g["params"]}
    assert not trainable & {id(p) for p in obj.teacher.parameters()}


def test_teacher_is_ema_of_all_student_modules():
    obj = _objective()
    assert set(obj.teacher.module.keys()) == {"backbone", "head", "patch_head", "filter"}
    with torch.no_grad():
        for p in obj.patch_head.parameters():
            p.add_(1.0)
    obj.after_step(step=0)
    m = float(obj.momentum_schedule[0])
    s = next(iter(obj.patch_head.parameters()))
    t = next(iter(obj.teacher["patch_head"].parameters()))
    torch.testing.assert_close(t, m * (s - 1.0) + (1 - m) * s)


@pytest.mark.parametrize("pairs", [["views"], ["nn"]])
def test_each_pair_kind_alone(pairs):
    out = _objective(pairs=pairs)(_embedded_batch(), step=0)
    assert torch.isfinite(out["cotap_loss"]) and 0.0 < float(out["cotap_loss"]) < 1.0


def test_no_projector_and_subsampled_candidates_unchunked():
    out = _objective(patch_head_layers=0, num_candidates=3, chunk_size=None)(_embedded_batch(), step=0)
    assert torch.isfinite(out["loss"])


def test_filter_registry_identity_and_unknown():
    assert "identity" in available_filters()
    f = build_filter("identity", 8, {})
    x = torch.randn(2, 3, 8)
    assert f.out_dim == 8 and torch.equal(f(x), x)
    with pytest.raises(ValueError, match="unknown CoTAP filter"):
        CoTAPOptions(filter="no_such_filter")
    with pytest.raises(ValueError, match="takes no options"):
        CoTAPOptions(filter="identity", filter_options={"k": 1})


def _train(steps: int, seed: int = 0, **options: object) -> list[float]:
    return _train_objective(_objective(steps=steps, seed=seed, **options), steps)


def _train_objective(obj: CoTAPObjective, steps: int, key: str = "cotap_loss") -> list[float]:
    batch = _embedded_batch()
    opt = torch.optim.AdamW([{"params": g["params"]} for g in obj.param_groups()], lr=1e-3)
    losses = []
    for step in range(steps):
        out = obj(batch, step=step)
        opt.zero_grad()
        out["loss"].backward()
        obj.before_optimizer_step(step=step)
        opt.step()
        obj.after_step(step=step)
        losses.append(float(out[key].detach()))
    return losses


def test_cotap_loss_decreases_on_embedded_data_and_is_deterministic():
    # Frozen teacher (momentum 1) and a student projector that differs from the teacher's: the student must
    # learn the teacher's similarity ranking, so the CoTAP term falls.
    obj = _objective(steps=8, momentum_teacher=1.0, drop_path_rate=0.0)
    torch.nn.init.normal_(obj.patch_head[0].weight, std=0.2)
    losses = _train_objective(obj, 8)
    assert sum(losses[-2:]) / 2 < losses[0] - 0.05, losses
    assert _train(2, seed=1) == _train(2, seed=1)
    assert _train(2, seed=1) != _train(2, seed=2)


def test_total_loss_decreases_with_default_settings():
    obj = _objective(steps=4)
    losses = _train_objective(obj, 4, key="loss")
    assert min(losses[1:]) < losses[0] - 0.5, losses


def test_defaults_make_teacher_maps_the_only_targets_and_mask_on_raw_similarity():
    o = CoTAPOptions()
    assert o.geometry == "none" and o.min_target == 0.5  # hard geometric positives are an ablation


def test_a_batch_without_image_pair_fails_instead_of_training_dino_alone():
    with pytest.raises(ValueError, match="no image pair"):
        _objective(pairs=["nn"])(_embedded_batch(b=1), step=0)


def _official_full_dino_checkpoint(path, dino) -> None:
    """The layout of facebookresearch/dino main_dino.py's checkpoint.pth: teacher / student (DDP-wrapped)
    state dicts with backbone.* and head.* (weight-normalised last layer as weight_g / weight_v), the centre."""

    def official(module_state, prefix):
        out = {}
        for k, v in module_state.items():
            k = k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            )
            out[prefix + k] = v.clone()
        return out

    teacher = official(dino.teacher["backbone"].state_dict(), "backbone.") | official(
        dino.teacher["head"].state_dict(), "head."
    )
    student = official(dino.backbone.state_dict(), "module.backbone.") | official(
        dino.head.state_dict(), "module.head."
    )
    torch.save({"teacher": teacher, "student": student, "dino_loss": {"center": torch.full((1, 64), 0.25)}}, path)


def test_init_from_a_full_dino_checkpoint_loads_its_head_too(tmp_path):
    from dssl.backbones.checkpoint import load_init
    from dssl.objectives.dino import DINOObjective

    torch.manual_seed(5)
    dino = DINOObjective(
        ViTBackbone("vit_t16", img_size=32), {k: TINY[k] for k in TINY if "patch" not in k}, total_steps=2
    )
    with torch.no_grad():
        for p in dino.head.parameters():
            p.add_(1.0)  # student head differs from the teacher's
    path = tmp_path / "checkpoint.pth"
    _official_full_dino_checkpoint(path, dino)
    cotap = _objective(seed=9)
    load_init(cotap.backbone, str(path))
    note = cotap.load_init_extras(str(path))
    assert note is not None and "head" in note and "centre" in note
    for ours, theirs in ((cotap.head, dino.head), (cotap.teacher["head"], dino.teacher["head"])):
        for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, msg=name)
    assert float(cotap.loss_fn.center.center.mean()) == 0.25
    # A backbone-only file has no head: nothing else is loaded.
    from dssl.backbones.checkpoint import save_backbone

    assert _objective().load_init_extras(str(save_backbone(dino.backbone, tmp_path / "backbone.pth"))) is None
