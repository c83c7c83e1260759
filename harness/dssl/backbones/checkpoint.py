"""Backbone initialisation (``--init``) and dssl's own backbone checkpoint format.

``--init`` accepts:

* ``random``: keep timm's random initialisation;
* ``timm``: timm's pretrained weights for the model's pretrained tag, *only* from the local Hugging Face or
  torch-hub cache (the harness never downloads);
* a local file (``.pth``/``.pt``/``.bin``/``.safetensors``): a timm state dict, a DINO/iBOT/DINOv2-style
  checkpoint (``{"teacher": ...}`` preferred over ``{"student": ...}``, keys prefixed ``module.``/
  ``backbone.``), an MAE-style ``{"model": ...}``, or a dssl checkpoint written by :func:`save_backbone`.

Files are read with ``weights_only=True`` (no pickled code is ever executed). Position embeddings are
resampled when the checkpoint's grid differs from the backbone's, patch-embedding kernels when the patch
size differs; any other shape mismatch is an error.

Example:
    >>> save_backbone(backbone, "out/backbone.pth")  # doctest: +SKIP
    >>> print(load_init(fresh_backbone, "out/backbone.pth").summary())  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch import Tensor

from dssl.backbones.vit import ViTBackbone
from dssl.errors import ConfigError

#: Value of ``"format"`` in checkpoints written by :func:`save_backbone`.
CHECKPOINT_FORMAT = "dssl.backbone/1"

# Sub-dicts tried, in order, when a checkpoint wraps its weights (dssl, DINO/iBOT, I-JEPA, MAE, Lightning).
_WRAPPER_KEYS = ("backbone", "teacher", "target_encoder", "model", "state_dict", "student", "encoder")
# Key prefixes added by DDP, torch.compile and DINO-style wrappers around the backbone.
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")
_SCOPES = ("teacher.", "target_encoder.", "student.", "backbone.")
_OWN_KEYS = ("mask_token", "extra_tokens", "extra_pos_embed")
_HF_FILENAMES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)


@dataclass
class InitReport:
    """What :func:`load_init` did.

    Attributes:
        missing: Backbone parameters the checkpoint did not provide (left at their initial value).
        unexpected: Checkpoint tensors the backbone has no parameter for (ignored).
        resized: Parameters resampled to the backbone's shape (position embeddings, patch kernels).
        source: ``"random"``, the file path, or ``"timm:<hub id or file>"``.
        loaded: Number of tensors copied into the backbone.
        ignored: Tensors outside the backbone (projection heads of DINO-style checkpoints).
    """

    missing: list[str]
    unexpected: list[str]
    resized: list[str]
    source: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the run log."""
        if self.source == "random":
            return "init: random (no checkpoint)"
        if self.source.startswith("random "):
            return f"init: {self.source}"
        parts = [f"init from {self.source}: {self.loaded} tensors loaded"]
        if self.resized:
            parts.append(f"resized {', '.join(self.resized)}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_preview(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_preview(self.unexpected)})")
        if self.ignored:
            parts.append(f"{len(self.ignored)} non-backbone tensors ignored")
        return "; ".join(parts)


def _preview(keys: list[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


# ---------------------------------------------------------------------------------------------- saving


def save_backbone(
    backbone: ViTBackbone, path: str | os.PathLike[str], *, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write the backbone's weights and constructor config atomically (:func:`~dssl.engine.checkpoint_io.save_atomic`).

    Args:
        backbone: The backbone to save.
        path: Destination file; parent folders are created.
        meta: Extra plain values (str/int/float/list/dict) stored under ``"meta"``, e.g. the run id.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": backbone.config(),
        "meta": dict(meta or {}),
        "backbone": {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()},
    }
    from dssl.engine.checkpoint_io import save_atomic

    return save_atomic(payload, path)


# ---------------------------------------------------------------------------------------------- loading


def load_init(backbone: ViTBackbone, init: str) -> InitReport:
    """Initialise ``backbone`` in place from ``init`` (``"random"``, ``"timm"`` or a file path).

    Raises:
        ConfigError: Missing or unreadable file, no cached timm weights, no matching tensor, or a shape
            that cannot be resampled (e.g. another embedding width).
    """
    if init == "random":
        return InitReport(missing=[], unexpected=[], resized=[], source="random")
    if init == "timm":
        path, source = _cached_timm_weights(backbone)
        return _load_file(backbone, path, source=source)
    path = Path(init).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise ConfigError(f"init checkpoint {init}: {what} (expected 'random', 'timm' or a checkpoint file)")
    return _load_file(backbone, path, source=str(path))


def _load_file(backbone: ViTBackbone, path: Path, *, source: str) -> InitReport:
    raw = _read(path)
    tensors, ignored = _backbone_tensors(raw, path)
    state = _to_backbone_keys(tensors)
    adapted, resized = _adapt_shapes(backbone, state, path)
    own = backbone.state_dict()
    loaded = sum(1 for key in adapted if key in own)
    if loaded == 0:
        raise ConfigError(
            f"init checkpoint {path}: no tensor matches the {backbone.timm_name} backbone"
            f" (first keys: {_preview(sorted(tensors))})"
        )
    result = backbone.load_state_dict(adapted, strict=False)
    return InitReport(
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
        resized=resized,
        source=source,
        loaded=loaded,
        ignored=ignored,
    )


def module_tensors(path: str | os.PathLike[str], module: str) -> dict[str, dict[str, Tensor]]:
    """The tensors of a module stored next to the backbone in a full training checkpoint.

    Reads DINO/iBOT-style full checkpoints (``{"teacher": {"backbone.*", "head.*"}, "student": {"module.*"}}``)
    without executing pickled code; a backbone-only file gives ``{}``.

    Args:
        path: The ``--init`` file.
        module: Module name inside each scope, e.g. ``"head"``.

    Returns:
        ``{scope: {key without "<module>.": tensor}}`` for the scopes ``"teacher"`` and ``"student"`` that hold it.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return {}
    raw = _read(path)
    found: dict[str, dict[str, Tensor]] = {}
    if not isinstance(raw, Mapping):
        return found
    prefix = f"{module}."
    for scope in ("teacher", "student"):
        sub = raw.get(scope)
        if not isinstance(sub, Mapping):
            continue
        tensors = {_strip(str(k)): v for k, v in sub.items() if isinstance(v, Tensor)}
        kept = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if kept:
            found[scope] = kept
    return found


def checkpoint_entry(path: str | os.PathLike[str], *keys: str) -> Any:
    """``checkpoint[keys[0]][keys[1]]...`` of a checkpoint file, or ``None`` when absent (e.g. DINO's centre,
    ``"dino_loss", "center"``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return None
    value: Any = _read(path)
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _read(path: Path) -> Any:
    """Load a checkpoint without executing pickled code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals(_plain_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for corrupt or foreign files
        text = str(exc).strip()
        reason = (text.splitlines() or [type(exc).__name__])[0]
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            culprit = f" ({found.group(1)})" if found else ""
            reason = f"it holds pickled objects{culprit}, which dssl never loads (weights_only=True)"
        raise ConfigError(f"init checkpoint {path}: cannot read it ({reason})") from exc


def _plain_data_globals() -> list[Any]:
    """Data-only classes that full DINO/iBOT/MAE checkpoints pickle next to the weights.

    ``argparse.Namespace`` (their ``args``) and numpy scalars/dtypes rebuild from plain values and run
    no code, so allowing them keeps ``weights_only=True`` safe while accepting those files.
    """
    import numpy as np

    allowed: list[Any] = [argparse.Namespace, np.dtype]
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    allowed.append(multiarray.scalar)
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes through these classes
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return allowed


def _backbone_tensors(raw: Any, path: Path) -> tuple[dict[str, Tensor], list[str]]:
    """Unwrap nested checkpoints and strip wrapper prefixes; return ``(tensors, ignored keys)``."""
    for _ in range(3):  # e.g. {"state_dict": {"model": {...}}}; never loops forever
        if not isinstance(raw, Mapping) or any(isinstance(v, Tensor) for v in raw.values()):
            break
        inner = next((raw[k] for k in _WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, Mapping):
        raise ConfigError(f"init checkpoint {path}: holds a {type(raw).__name__}, not a state dict")
    tensors = {str(k): v for k, v in raw.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ConfigError(f"init checkpoint {path}: contains no tensors (keys: {_preview(sorted(map(str, raw)))})")
    tensors = {_strip(k): v for k, v in tensors.items()}
    ignored: list[str] = []
    # Flattened student/teacher modules, then DINO-style `backbone.` next to projection heads we must not
    # load; applied in turn, so `teacher.backbone.` works and the teacher wins over the student.
    for scope in _SCOPES:
        if any(k.startswith(scope) for k in tensors):
            ignored += [k for k in tensors if not k.startswith(scope)]
            tensors = {k.removeprefix(scope): v for k, v in tensors.items() if k.startswith(scope)}
    # MAE: the decoder (and its own, narrower mask token) is not part of the encoder.
    decoder = [k for k in tensors if k.startswith("decoder")]
    if decoder and "mask_token" in tensors:
        decoder.append("mask_token")
    ignored += decoder
    tensors = {k: v for k, v in tensors.items() if k not in decoder}
    return tensors, sorted(ignored)


def _strip(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _to_backbone_keys(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map timm/DINO/iBOT/DINOv2 key names onto :class:`ViTBackbone` names (``vit.*`` + own params)."""
    if any(k.startswith("vit.") for k in tensors):
        return dict(tensors)  # dssl's own format
    state: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if key in ("mask_token", "masked_embed"):  # DINOv2 / iBOT store it as (1, D)
            state["mask_token"] = value.reshape(1, 1, -1)
        elif key in _OWN_KEYS:
            state[key] = value
        elif key == "register_tokens":  # DINOv2 original name
            state["vit.reg_token"] = value
        else:
            state[f"vit.{key}"] = value
    return state


def _adapt_shapes(backbone: ViTBackbone, state: dict[str, Tensor], path: Path) -> tuple[dict[str, Tensor], list[str]]:
    """Resample position embeddings / patch kernels; reject any other shape mismatch."""
    own = backbone.state_dict()
    out = dict(state)
    resized: list[str] = []
    if "vit.pos_embed" in out and "vit.pos_embed" in own:
        pos, changed = _fit_pos_embed(backbone, out, path)
        out["vit.pos_embed"] = pos
        if changed:
            resized.append("vit.pos_embed")
    kernel_key = "vit.patch_embed.proj.weight"
    if kernel_key in out and kernel_key in own and out[kernel_key].shape != own[kernel_key].shape:
        kernel, target = out[kernel_key], own[kernel_key]
        if kernel.dim() == 4 and kernel.shape[:2] == target.shape[:2]:
            out[kernel_key] = resample_patch_embed(kernel, list(target.shape[-2:]))
            resized.append(kernel_key)
    for key, value in out.items():
        if key in own and value.shape != own[key].shape:
            raise ConfigError(
                f"init checkpoint {path}: {key} has shape {tuple(value.shape)} but the {backbone.timm_name}"
                f" backbone expects {tuple(own[key].shape)} (different architecture?)"
            )
    return out, resized


def _fit_pos_embed(backbone: ViTBackbone, state: dict[str, Tensor], path: Path) -> tuple[Tensor, bool]:
    """Return the checkpoint's position embedding on the backbone's grid, and whether it changed."""
    vit = backbone.vit
    pos = state["vit.pos_embed"]
    target = vit.pos_embed
    if pos.dim() != 3 or pos.shape[-1] != target.shape[-1]:
        return pos, False  # wrong width: reported by the generic shape check
    model_prefix = 0 if vit.no_embed_class else backbone.num_prefix_tokens
    # Find how many prefix entries the checkpoint has: the rest must be a square grid.
    ckpt_prefix = next((n for n in dict.fromkeys((model_prefix, 1, 0)) if _is_square(pos.shape[1] - n)), None)
    if ckpt_prefix is None:
        raise ConfigError(f"init checkpoint {path}: vit.pos_embed with {pos.shape[1]} positions is not a square grid")
    if ckpt_prefix != model_prefix:
        if ckpt_prefix == 1 and model_prefix == 0 and "vit.cls_token" in state:
            # DINOv2 original layout: fold the class position into the class token, as timm does.
            state["vit.cls_token"] = state["vit.cls_token"] + pos[:, :1]
            pos = pos[:, 1:]
        else:
            raise ConfigError(
                f"init checkpoint {path}: vit.pos_embed has {ckpt_prefix} prefix positions, the backbone {model_prefix}"
            )
    side = math.isqrt(pos.shape[1] - model_prefix)
    grid = tuple(vit.patch_embed.grid_size)
    if (side, side) == grid and pos.shape == target.shape:
        return pos, False
    resampled = resample_abs_pos_embed(pos, new_size=list(grid), old_size=[side, side], num_prefix_tokens=model_prefix)
    return resampled, True


def _is_square(count: int) -> bool:
    return count > 0 and math.isqrt(count) ** 2 == count


# ---------------------------------------------------------------------------------------------- timm cache


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Force HF_HUB_OFFLINE=1 for the duration (restoring the previous value)."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _cached_timm_weights(backbone: ViTBackbone) -> tuple[Path, str]:
    """Locate timm's pretrained weights in the local caches only; never touches the network.

    The cache is inspected directly (not through ``timm.create_model(pretrained=True)``) because
    huggingface_hub reads HF_HUB_OFFLINE once at import, so setting it later does not stop a download
    attempt, which hangs without a network.
    """
    cfg = dict(getattr(backbone.vit, "pretrained_cfg", None) or {})
    name = backbone.timm_name
    try:
        with _offline():
            found = _find_in_caches(cfg)
    except Exception as exc:  # a broken cache or hub install must not crash the run with a traceback
        raise ConfigError(f"no cached pretrained weights for {name} ({exc}); pass --init PATH") from exc
    if found is None:
        raise ConfigError(f"no cached pretrained weights for {name}; pass --init PATH")
    return found


def _find_in_caches(cfg: Mapping[str, Any]) -> tuple[Path, str] | None:
    if cfg.get("file") and Path(cfg["file"]).is_file():
        return Path(cfg["file"]), f"timm:{cfg['file']}"
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id, _, revision = str(hub_id).partition("@")
        filenames = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else _HF_FILENAMES
        for filename in filenames:
            cached = try_to_load_from_cache(repo_id, filename, revision=revision or None)
            if isinstance(cached, str) and Path(cached).is_file():
                return Path(cached), f"timm:{repo_id}"
    url = cfg.get("url")
    if url:
        # timm's legacy cache: <torch hub dir>/checkpoints/<URL file name>; .npz needs timm's JAX loader.
        cached_url = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        if cached_url.is_file() and cached_url.suffix != ".npz":
            return cached_url, f"timm:{url}"
    return None
