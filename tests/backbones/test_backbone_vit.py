"""Contract of the timm-based ViT backbones: token shapes, dynamic sizes, masking, extra tokens, features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from dssl.backbones.vit import ALIASES, TokenOutput, ViTBackbone, build_vit
from dssl.backbones.vit_config import ViTOptions
from dssl.errors import ConfigError
from pydantic import ValidationError

HARNESS = Path(__file__).resolve().parents[2] / "harness"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny() -> ViTBackbone:
    torch.manual_seed(0)
    return build_vit(name="vit_t16", img_size=64).eval()


@pytest.fixture(scope="module")
def tiny_extra() -> ViTBackbone:
    torch.manual_seed(0)
    return build_vit(name="vit_t16", img_size=64, extra_tokens=2)


def images(batch: int = 2, height: int = 64, width: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------------ config and names


def test_config_module_does_not_import_torch() -> None:
    code = "import sys, dssl.backbones.vit_config, dssl.backbones; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(HARNESS)})


def test_options_forbid_unknown_keys_and_check_ranges() -> None:
    assert ViTOptions().model_dump() == {
        "drop_path_rate": 0.0,
        "img_size": 224,
        "feature_layers": None,
        "mask_mode": "token",
    }
    with pytest.raises(ValidationError):
        ViTOptions(drop_rate=0.1)
    with pytest.raises(ValidationError):
        ViTOptions(drop_path_rate=1.5)
    with pytest.raises(ValidationError):
        ViTOptions(mask_mode="zero")


def test_build_vit_turns_bad_options_into_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backbone option 'drop_rate'; accepted: drop_path_rate"):
        build_vit(name="vit_t16", img_size=64, drop_rate=0.1)
    with pytest.raises(ConfigError, match="backbone option drop_path_rate") as info:
        build_vit(name="vit_t16", img_size=64, drop_path_rate=-0.1)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs a model name"):
        build_vit(img_size=64)


def test_aliases_name_timm_models() -> None:
    for timm_name in ALIASES.values():
        assert timm.is_model(timm_name), timm_name


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ConfigError, match="unknown ViT backbone 'vit_smal_patch16_224'; did you mean") as info:
        ViTBackbone("vit_smal_patch16_224", img_size=64)
    assert "vit_small_patch16_224" in str(info.value)
    with pytest.raises(ConfigError, match="did you mean vit_s16"):
        ViTBackbone("vit_s61", img_size=64)


def test_non_vit_timm_model_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a timm VisionTransformer"):
        ViTBackbone("resnet18")


def test_timm_name_and_options_reach_the_timm_model() -> None:
    backbone = build_vit(timm_name="vit_tiny_patch16_224", img_size=32, drop_path_rate=0.2, mask_mode="drop")
    assert backbone.timm_name == "vit_tiny_patch16_224"
    assert backbone.vit.patch_embed.grid_size == (2, 2)
    assert backbone.vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert backbone.mask_token is None
    assert backbone.config()["mask_mode"] == "drop"


def test_img_size_must_be_a_multiple_of_the_patch_size() -> None:
    with pytest.raises(ConfigError, match="img_size 40 is not divisible by patch size 16"):
        build_vit(name="vit_t16", img_size=40)


# ------------------------------------------------------------------------------------ every alias


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_token_contract(alias: str) -> None:
    torch.manual_seed(0)
    patch = {"vit_s8": 8, "vit_b8": 8, "vit_s14_reg": 14}.get(alias, 16)
    backbone = build_vit(name=alias, img_size=4 * patch).eval()
    assert backbone.patch_size == patch
    assert backbone.depth == 12
    assert backbone.embed_dim == backbone.num_heads * 64
    assert backbone.num_prefix_tokens == (5 if alias == "vit_s14_reg" else 1)
    x = images(2, 3 * patch, 4 * patch)
    with torch.no_grad():
        out = backbone(x)
        reference = backbone.vit.forward_features(x)
    dim, prefix = backbone.embed_dim, backbone.num_prefix_tokens
    assert isinstance(out, TokenOutput)
    assert out.grid == (3, 4)
    assert out.prefix.shape == (2, prefix, dim)
    assert out.patches.shape == (2, 12, dim)
    assert out.cls.shape == (2, dim)
    assert out.extra.shape == (2, 0, dim)
    # Our re-assembled forward must be exactly timm's (same embeddings, same blocks, same norm).
    torch.testing.assert_close(torch.cat([out.prefix, out.patches], dim=1), reference)


# ------------------------------------------------------------------------------------ sizes


def test_dynamic_input_size_gives_matching_grid(tiny: ViTBackbone) -> None:
    with torch.no_grad():
        out = tiny(images(2, 48, 64))
        square = tiny(images(1, 96, 96))
    assert out.grid == (3, 4)
    assert out.patches.shape == (2, 12, 192)
    assert out.patch_map().shape == (2, 3, 4, 192)
    assert square.grid == (6, 6)
    assert square.patches.shape == (1, 36, 192)


def test_non_divisible_input_size_raises(tiny: ViTBackbone) -> None:
    with pytest.raises(ConfigError, match="image size 50x64 is not divisible by patch size 16"):
        tiny(images(1, 50, 64))
    with pytest.raises(ConfigError, match=r"expected images of shape \(B, 3, H, W\)"):
        tiny(torch.randn(3, 64, 64))


def test_staged_forward_equals_forward(tiny: ViTBackbone) -> None:
    x = images()
    with torch.no_grad():
        tokens, grid = tiny.prepare_tokens(x)
        assert tokens.shape == (2, 1 + 16, 192)
        tokens = tiny.run_blocks(tokens, 0, 5)
        tokens = tiny.run_blocks(tokens, 5)
        staged = tiny.split_tokens(tokens, grid)
        direct = tiny(x)
    torch.testing.assert_close(staged.patches, direct.patches)
    torch.testing.assert_close(staged.prefix, direct.prefix)


def test_gradient_checkpointing_keeps_outputs() -> None:
    torch.manual_seed(0)
    backbone = build_vit(name="vit_t16", img_size=32).train()
    x = images(2, 32, 32)
    plain = backbone(x).patches
    backbone.set_grad_checkpointing()
    checkpointed = backbone(x).patches
    checkpointed.sum().backward()
    torch.testing.assert_close(plain, checkpointed)
    assert backbone.vit.blocks[0].attn.qkv.weight.grad is not None


# ------------------------------------------------------------------------------------ masking


def half_mask(batch: int = 2, count: int = 16, masked: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    order = torch.stack([torch.randperm(count, generator=generator) for _ in range(batch)])
    return order < masked  # exactly `masked` True per row


def test_mask_token_replaces_masked_patches(tiny: ViTBackbone) -> None:
    x, mask = images(), half_mask()
    with torch.no_grad():
        plain = tiny(x)
        masked = tiny(x, mask=mask)
        as_map = tiny(x, mask=mask.reshape(2, 4, 4))
        none_masked = tiny(x, mask=torch.zeros_like(mask))
    assert masked.patches.shape == plain.patches.shape
    difference = (masked.patches - plain.patches).abs().amax(dim=-1)
    assert bool((difference[mask] > 1e-3).all())
    torch.testing.assert_close(as_map.patches, masked.patches)
    torch.testing.assert_close(none_masked.patches, plain.patches)


def test_mask_token_receives_gradient() -> None:
    torch.manual_seed(0)
    backbone = build_vit(name="vit_t16", img_size=32)
    assert backbone.mask_token is not None and backbone.mask_token.shape == (1, 1, 192)
    backbone(images(2, 32, 32), mask=half_mask(2, 4, 2)).patches.sum().backward()
    assert backbone.mask_token.grad is not None
    assert backbone.mask_token.grad.abs().sum() > 0


def test_drop_masked_keeps_unmasked_patches_only(tiny: ViTBackbone) -> None:
    x, mask = images(), half_mask(masked=6)
    with torch.no_grad():
        dropped = tiny(x, mask=mask, drop_masked=True)
        nothing_dropped = tiny(x, mask=torch.zeros_like(mask), drop_masked=True)
        plain = tiny(x)
    assert dropped.patches.shape == (2, 10, 192)
    assert dropped.grid == (4, 4)
    torch.testing.assert_close(nothing_dropped.patches, plain.patches)


def test_drop_masked_needs_equal_counts(tiny: ViTBackbone) -> None:
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :3] = True
    with pytest.raises(ConfigError, match="same number of masked patches"):
        tiny(images(), mask=mask, drop_masked=True)


def test_drop_mode_drops_by_default_and_has_no_mask_token() -> None:
    torch.manual_seed(0)
    backbone = build_vit(name="vit_t16", img_size=64, mask_mode="drop")
    assert backbone.mask_token is None
    assert "mask_token" not in backbone.state_dict()
    assert backbone(images(), mask=half_mask(masked=4)).patches.shape == (2, 12, 192)
    with pytest.raises(ConfigError, match="no mask token"):
        backbone(images(), mask=half_mask(), drop_masked=False)


def test_bad_masks_raise(tiny: ViTBackbone) -> None:
    with pytest.raises(ConfigError, match="mask must be a bool tensor"):
        tiny(images(), mask=torch.zeros(2, 16))
    with pytest.raises(ConfigError, match=r"mask of shape \(2, 12\) does not fit 2 images with a 4x4"):
        tiny(images(), mask=torch.zeros(2, 12, dtype=torch.bool))


# ------------------------------------------------------------------------------------ extra tokens


def test_extra_tokens_have_own_position_embeddings_and_learn(tiny_extra: ViTBackbone) -> None:
    backbone = tiny_extra
    assert backbone.num_extra_tokens == 2
    assert backbone.extra_tokens is not None and backbone.extra_tokens.shape == (1, 2, 192)
    assert backbone.extra_pos_embed is not None and backbone.extra_pos_embed.shape == (1, 2, 192)
    assert backbone.vit.pos_embed.shape == (1, 1 + 16, 192)  # timm's own table is untouched
    backbone.zero_grad()
    out = backbone(images(2, 48, 64))
    assert out.prefix.shape == (2, 3, 192)
    assert out.extra.shape == (2, 2, 192)
    assert out.cls.shape == (2, 192)
    assert out.patches.shape == (2, 12, 192)
    # A loss on the patches alone reaches the extra tokens: they attend in every block.
    out.patches.sum().backward()
    assert backbone.extra_tokens.grad is not None and backbone.extra_tokens.grad.abs().sum() > 0
    assert backbone.extra_pos_embed.grad is not None and backbone.extra_pos_embed.grad.abs().sum() > 0


def test_extra_position_embedding_is_used(tiny_extra: ViTBackbone) -> None:
    backbone = tiny_extra.eval()
    x = images()
    with torch.no_grad():
        before = backbone(x)
        saved = backbone.extra_pos_embed.detach().clone()
        # Not a constant shift: the norms would cancel it.
        backbone.extra_pos_embed[:, 1].add_(torch.randn(192, generator=torch.Generator().manual_seed(3)))
        after = backbone(x)
        backbone.extra_pos_embed.copy_(saved)
    changed = (after.extra - before.extra).abs().amax(dim=(0, 2))
    assert changed[1] > 0.1
    assert changed[1] > changed[0]  # token 0 moves only through attention to token 1
    assert backbone.no_weight_decay() >= {"extra_tokens", "extra_pos_embed", "mask_token", "vit.pos_embed"}


# ------------------------------------------------------------------------------------ features


def test_features_default_is_last_layer_map(tiny: ViTBackbone) -> None:
    x = images(2, 48, 64)
    with torch.no_grad():
        features = tiny.features(x)
        out = tiny(x)
    assert features.shape == (2, 3, 4, 192)
    torch.testing.assert_close(features, out.patch_map())


def test_features_concatenate_requested_layers(tiny: ViTBackbone) -> None:
    x = images()
    with torch.no_grad():
        both = tiny.features(x, layers=[0, -1])
        last = tiny.features(x)
        first = tiny.features(x, layers=[0])
    assert both.shape == (2, 4, 4, 384)
    torch.testing.assert_close(both[..., :192], first)
    torch.testing.assert_close(both[..., 192:], last)
    with pytest.raises(ConfigError, match="feature layer 12 is out of range for a 12-block ViT"):
        tiny.features(x, layers=[12])
    with pytest.raises(ConfigError, match="same block twice"):
        tiny.features(x, layers=[11, -1])


def test_feature_layers_option_sets_the_default() -> None:
    torch.manual_seed(0)
    backbone = build_vit(name="vit_t16", img_size=32, feature_layers=[-4, -1]).eval()
    assert backbone.feature_layers == (8, 11)
    with torch.no_grad():
        assert backbone.features(images(1, 32, 32)).shape == (1, 2, 2, 384)
    with pytest.raises(ConfigError, match="out of range"):
        build_vit(name="vit_t16", img_size=32, feature_layers=[-13])


# ------------------------------------------------------------------------------------ timm_args


def test_timm_args_change_the_timm_architecture() -> None:
    args = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
    backbone = build_vit(timm_name="vit_tiny_patch16_224", img_size=32, timm_args=args).eval()
    assert (backbone.patch_size, backbone.embed_dim, backbone.depth, backbone.num_heads) == (8, 64, 2, 2)
    assert backbone.config()["timm_args"] == args
    x = images(2, 32, 24)
    with torch.no_grad():
        out = backbone(x)
        reference = backbone.vit.forward_features(x)
    assert out.grid == (4, 3)
    torch.testing.assert_close(torch.cat([out.prefix, out.patches], dim=1), reference)


def test_timm_args_may_not_override_what_dssl_sets() -> None:
    with pytest.raises(ConfigError, match="timm_args may not set img_size"):
        build_vit(timm_name="vit_tiny_patch16_224", img_size=32, timm_args={"img_size": 64})


def test_cpu_track_alias_is_a_small_timm_vit() -> None:
    from dssl.config import RunConfig
    from dssl.host import get_host
    from dssl.runner import build_backbone

    config = RunConfig.model_validate({"backbone": {"name": "vit_cpu8", "options": {"img_size": 64}}})
    backbone = build_backbone(config, get_host())
    assert isinstance(backbone.vit, timm.models.vision_transformer.VisionTransformer)
    assert (backbone.patch_size, backbone.embed_dim, backbone.depth, backbone.num_heads) == (8, 128, 4, 4)
    assert sum(p.numel() for p in backbone.vit.parameters()) < 1_000_000
    assert backbone.config()["timm_args"] == {"patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4}
