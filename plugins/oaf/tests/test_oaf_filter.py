"""Object-Aware Filter: attention rows, variants, gradients through CoTAP, EMA teacher copy, full method."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from dssl_cotap.config import CoTAPOptions
from dssl_cotap.filters import available_filters, build_filter
from dssl_oaf.config import OAFOptions
from dssl_oaf.filter import ObjectAwareFilter


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_rows_sum_to_one(heads):
    f = ObjectAwareFilter(16, OAFOptions(num_prototypes=5, num_heads=heads))
    a = f.attention(torch.randn(3, 7, 16))
    assert a.shape == (3, heads, 7, 5) and (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(3, heads, 7))


def test_values_variant_is_attention_weighted_prototype_values():
    torch.manual_seed(0)
    f = ObjectAwareFilter(8, OAFOptions(num_prototypes=3))
    z = torch.randn(2, 4, 8)
    q = torch.nn.functional.normalize(z @ f.q.weight.T, dim=-1)
    k = torch.nn.functional.normalize(f.prototypes @ f.k.weight.T, dim=-1)
    a = torch.softmax(q @ k.T / 0.1, dim=-1)  # independent
    expected = a @ f.v(f.prototypes)
    torch.testing.assert_close(f(z), expected)


@pytest.mark.parametrize(
    ("options", "out_dim"),
    [
        ({"num_prototypes": 6}, 16),
        ({"num_prototypes": 6, "attn_dim": 8, "num_heads": 2}, 8),
        ({"num_prototypes": 6, "output": "assignment"}, 6),
        ({"num_prototypes": 6, "output": "assignment", "combine": "concat"}, 22),
    ],
)
def test_output_variants(options, out_dim):
    f = ObjectAwareFilter(16, OAFOptions(**options))
    out = f(torch.randn(2, 5, 16))
    assert f.out_dim == out_dim and out.shape == (2, 5, out_dim)
    if options.get("output") == "assignment" and "combine" not in options:
        torch.testing.assert_close(out.sum(-1), torch.ones(2, 5))


def test_registered_as_cotap_filter_with_validated_options():
    assert "oaf" in available_filters()
    assert isinstance(build_filter("oaf", 12, {"num_prototypes": 4}), ObjectAwareFilter)
    CoTAPOptions(filter="oaf", filter_options={"num_prototypes": 8, "output": "assignment"})
    with pytest.raises(ValueError):
        CoTAPOptions(filter="oaf", filter_options={"num_protos": 8})
    with pytest.raises(ValueError):
        OAFOptions(attn_dim=10, num_heads=3)


def _objective(**options: object):
    from dssl.backbones.vit import ViTBackbone
    from dssl_cotap.objective import CoTAPObjective

    torch.manual_seed(0)
    opts = {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32, "patch_dim": 32, "patch_hidden_dim": 64}
    opts |= {"freeze_last_layer_steps": 0, "filter": "oaf", "filter_options": {"num_prototypes": 8}, **options}
    return CoTAPObjective(ViTBackbone("vit_t16", img_size=32), opts, total_steps=5)


def _batch():
    from dssl.augment.multicrop import MultiCrop, collate_views
    from dssl.augment.multicrop_config import MultiCropOptions

    mc = MultiCrop(MultiCropOptions(global_size=32, local_size=16, n_local=2))
    g = torch.Generator().manual_seed(0)
    return collate_views([mc(torch.rand(3, 48, 48, generator=g), generator=g) for _ in range(3)])


def test_gradients_reach_filter_and_student_never_teacher_filter():
    from dssl.layers.multicrop_forward import forward_views

    obj = _objective()
    assert isinstance(obj.filter, ObjectAwareFilter) and isinstance(obj.teacher["filter"], ObjectAwareFilter)
    batch = _batch()
    with torch.no_grad():
        t_out = forward_views(obj.teacher["backbone"], batch.crops[:2])
    s_out = forward_views(obj.backbone, batch.crops)
    obj._cotap(batch, s_out, t_out)["loss"].backward()
    for name, p in obj.filter.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.backbone.parameters())
    assert all(p.grad is None and not p.requires_grad for p in obj.teacher["filter"].parameters())
    trainable = {id(p) for g in obj.param_groups() for p in g["params"]}
    assert {id(p) for p in obj.filter.parameters()} <= trainable


def test_teacher_filter_follows_ema():
    obj = _objective()
    with torch.no_grad():
        obj.filter.prototypes.add_(1.0)
    obj.after_step(step=0)
    m = float(obj.momentum_schedule[0])
    s, t = obj.filter.prototypes, obj.teacher["filter"].prototypes
    torch.testing.assert_close(t, m * (s - 1.0) + (1 - m) * s)


@pytest.mark.parametrize("output", ["values", "assignment"])
def test_full_method_trains(output):
    obj = _objective(filter_options={"num_prototypes": 8, "output": output})
    opt = torch.optim.AdamW([{"params": g["params"]} for g in obj.param_groups()], lr=1e-3)
    batch = _batch()
    for step in range(2):
        out = obj(batch, step=step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        obj.after_step(step=step)
        assert torch.isfinite(out["loss"]) and 0.0 <= float(out["cotap_loss"]) <= 1.0


def test_cotap_conformance_with_oaf(monkeypatch):
    from dssl.host import get_host
    from dssl.testing import check_component

    entry = get_host().get("objective", "cotap")
    metadata = {**entry.metadata, "test_options": {**entry.metadata.get("test_options", {}), "filter": "oaf"}}
    patched = dataclasses.replace(entry, metadata=metadata) if dataclasses.is_dataclass(entry) else entry
    if patched is entry:
        monkeypatch.setitem(entry.metadata, "test_options", metadata["test_options"])
    check_component(patched)


def test_oaf_cotap_is_its_own_method_on_leaderboards() -> None:
    assert _objective().method_label == "cotap+oaf"
    assert _objective(filter="identity", filter_options={}).method_label == "cotap"


def test_cosine_attention_is_the_default_and_matches_an_independent_computation():
    torch.manual_seed(0)
    f = ObjectAwareFilter(8, OAFOptions(num_prototypes=3))
    z = torch.randn(2, 4, 8)
    q = torch.nn.functional.normalize(z @ f.q.weight.T, dim=-1)
    k = torch.nn.functional.normalize(f.prototypes @ f.k.weight.T, dim=-1)
    torch.testing.assert_close(f.attention(z)[:, 0], torch.softmax(q @ k.T / 0.1, dim=-1))


def test_cotap_with_oaf_has_a_live_loss_at_init():
    # With uniform attention every patch gets one vector, CoTAP's targets tie and the loss is exactly 0.
    objective = _objective()
    out = objective(_batch(), step=0)
    assert float(out["cotap_loss"]) > 1e-3 and float(out["cotap_ap"]) < 0.999


def test_dot_product_attention_is_gone():
    # At random init it attended uniformly: a constant filter output and an identically zero CoTAP term.
    with pytest.raises(ValueError):
        OAFOptions(similarity="dot")
    assert OAFOptions().similarity == "cosine" and OAFOptions().temperature == 0.1


def test_cotap_term_stays_live_while_training_with_oaf():
    """Several optimisation steps of the full method: the CoTAP term, its gradient into the filter and the
    collapse monitor (mean target mass per candidate; 1.0 = all targets tie) stay away from collapse."""
    obj = _objective()
    opt = torch.optim.AdamW([{"params": g["params"]} for g in obj.param_groups()], lr=1e-3)
    batch = _batch()
    for step in range(obj.total_steps):
        out = obj(batch, step=step)
        opt.zero_grad()
        out["loss"].backward()
        filter_grad = sum(float(p.grad.abs().sum()) for p in obj.filter.parameters() if p.grad is not None)
        opt.step()
        obj.after_step(step=step)
        assert float(out["cotap_loss"]) > 1e-3, (step, out)
        assert float(out["cotap_target_mass_fraction"]) < 0.99, (step, out)
        assert filter_grad > 0.0, step


def test_published_cotap_numbers_are_labelled_as_the_full_method() -> None:
    # The README's CoTAP rows are CoTAP with OAF; here `cotap` is the method without it.
    from dssl.catalogue import load_catalogue

    published = [r for r in load_catalogue().references if "CoTAP" in r.source and "+CoTAP" in r.source]
    assert published and {r.method for r in published} == {_objective().method_label}
