"""Contract checks per component kind (see :mod:`dssl.testing`).

Each entry may carry ``test_options`` in its registry metadata: option overrides that keep the checks
small and fast on a CPU (e.g. a narrower projection head). Backbones may carry ``test_name`` (the
model to build when the entry is generic, like ``timm``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from dssl.host import DISABLE_ENV
from dssl.registry import COMPONENT_KINDS, ComponentEntry

#: The reference backbone objectives are checked on: small, and not ViT-S wide (a width other than 384).
REFERENCE_BACKBONE = "vit_t16"
IMAGE_SIZE = 32


class ConformanceError(AssertionError):
    """A component does not meet its contract; the message says which clause."""


def _require(condition: bool, entry: ComponentEntry, clause: str) -> None:
    if not condition:
        raise ConformanceError(f"{entry.kind} '{entry.name}' ({entry.distribution}): {clause}")


def check_plugin(
    distribution: str, components: Mapping[str, Iterable[str]], *, hooks: Iterable[str] = ()
) -> dict[tuple[str, str], ComponentEntry]:
    """Check that a plugin distribution is installed, loads, and registers exactly what it says, without collision.

    This is what a plugin's own conformance test calls first (``dssl new-plugin`` writes that test): a plugin that
    fails to import, whose hooks do not match the specifications, whose API range excludes this dssl, which
    registers nothing or other names than ``components``, or whose names collide with another distribution's,
    fails it with the reason.

    Args:
        distribution: The plugin's distribution name (``dssl-my-method``; case-insensitive).
        components: What it registers: kind -> names, e.g. ``{"objective": ["my_method"]}``.
        hooks: The lifecycle hooks it implements, e.g. ``["dssl_run_finished"]``.

    Returns:
        ``(kind, name)`` -> registry entry, for :func:`check_component`.

    Raises:
        ConformanceError: Naming the distribution and what is wrong.
    """
    __tracebackhide__ = True  # pytest shows the plugin's test and the reason, not this function's source
    from dssl.host import get_host

    host = get_host()
    records = [r for r in host.records if r.distribution.lower() == distribution.lower()]
    if not records:
        raise ConformanceError(
            f"plugin {distribution} is not installed: no entry point of the group 'dssl' belongs to a distribution "
            "of that name (install it, e.g. pip install -e .)"
        )
    for record in records:
        if record.status != "loaded":
            why = record.error or f"disabled (--disable-plugin / ${DISABLE_ENV})"
            raise ConformanceError(f"plugin {distribution} (entry point '{record.entry_point}') did not load: {why}")
    for record in host.records:
        if record.collides_with is not None and record.collides_with.lower() == distribution.lower():
            raise ConformanceError(
                f"plugin {distribution} registers a name that {record.distribution} registers too: {record.error}"
            )
    registered = {(e.kind, e.name): e for r in records for e in r.components}
    implemented = {hook for r in records for hook in r.hooks}
    expected = {(kind, name) for kind, names in components.items() for name in names}
    if not registered and not implemented:
        raise ConformanceError(f"plugin {distribution} registers no component and implements no lifecycle hook")
    missing = sorted(expected - registered.keys())
    unlisted = sorted(registered.keys() - expected)
    absent_hooks = sorted(set(hooks) - implemented)
    problems = [f"does not register {kind} '{name}'" for kind, name in missing]
    problems += [f"registers {kind} '{name}', which the test does not list" for kind, name in unlisted]
    problems += [f"does not implement the hook {hook}" for hook in absent_hooks]
    if problems:
        found = ", ".join(f"{kind} '{name}'" for kind, name in sorted(registered)) or "nothing"
        raise ConformanceError(f"plugin {distribution} {'; '.join(problems)} (it registers: {found})")
    return registered


def component_cases(distribution: str | None = None, kind: str | None = None) -> list[ComponentEntry]:
    """Registered components to check, optionally of one distribution and/or kind."""
    from dssl.host import get_host

    entries = get_host().registry.entries(kind)  # type: ignore[arg-type]
    return [e for e in entries if distribution is None or e.distribution.lower() == distribution.lower()]


def options_for(entry: ComponentEntry, **overrides: Any) -> BaseModel | None:
    """The entry's options: defaults, then its ``test_options``, then ``overrides``."""
    model = entry.options_model()
    if model is None:
        return None
    return model.model_validate({**entry.metadata.get("test_options", {}), **overrides})


def check_entry(entry: ComponentEntry) -> None:
    """Clauses every kind shares: summary, importable target, options model with valid defaults."""
    _require(entry.kind in COMPONENT_KINDS, entry, f"unknown kind {entry.kind!r}")
    _require(bool(entry.summary.strip()) and "\n" not in entry.summary, entry, "summary must be one line")
    model = entry.options_model()
    if model is not None:
        _require(isinstance(model, type) and issubclass(model, BaseModel), entry, "options must be a pydantic model")
        _require(model.model_config.get("extra") == "forbid", entry, "options model must forbid unknown keys")
        try:
            model()
        except Exception as exc:
            raise ConformanceError(f"{entry.kind} '{entry.name}': options defaults do not validate: {exc}") from exc
    entry.load()


def check_component(entry: ComponentEntry) -> None:
    """Run the shared clauses and the kind's own checks."""
    check_entry(entry)
    CHECKS[entry.kind](entry)


# --- backbones ----------------------------------------------------------------------------------


def build_backbone(entry: ComponentEntry, *, extra_tokens: int = 0, img_size: int | None = None) -> Any:
    options = options_for(entry)
    values = options.model_dump() if options is not None else {}
    values.pop("img_size", None)
    name = entry.metadata.get("test_name", entry.name)
    kwargs: dict[str, Any] = {"name": name, "timm_name": entry.metadata.get("timm_name"), "extra_tokens": extra_tokens}
    if entry.metadata.get("timm_args"):
        kwargs["timm_args"] = entry.metadata["timm_args"]
    if img_size is not None:
        kwargs["img_size"] = img_size
    return entry.load()(**kwargs, **values)


def check_backbone(entry: ComponentEntry) -> None:
    import torch

    backbone = build_backbone(entry).eval()
    patch, dim = backbone.patch_size, backbone.embed_dim
    _require(isinstance(patch, int) and patch > 0 and isinstance(dim, int) and dim > 0, entry, "patch_size/embed_dim")
    images = torch.randn(2, 3, 2 * patch, 3 * patch)
    with torch.no_grad():
        out = backbone(images)
        _require(tuple(out.grid) == (2, 3), entry, f"grid of a {2 * patch}x{3 * patch} image must be (2, 3)")
        shape = tuple(out.patches.shape)
        _require(shape == (2, 6, dim), entry, f"patch tokens (B,N,D) expected, got {shape}")
        prefix = tuple(out.prefix.shape)
        _require(len(prefix) == 3 and prefix[0] == 2 and prefix[2] == dim, entry, f"prefix (B,P,D), got {prefix}")
        _require(out.cls.shape == (2, dim), entry, "cls (B,D)")
        features = backbone.features(images)
        _require(features.shape == (2, 2, 3, dim), entry, f"features (B,h,w,D) expected, got {tuple(features.shape)}")
        masked = backbone(images, mask=torch.zeros(2, 6, dtype=torch.bool).index_fill_(1, torch.tensor([0]), True))
        _require(masked.patches.shape[0] == 2, entry, "masked forward")
    with_extra = build_backbone(entry, extra_tokens=2).eval()
    with torch.no_grad():
        extra_out = with_extra(images)
    _require(extra_out.prefix.shape[1] == out.prefix.shape[1] + 2, entry, "extra tokens add prefix tokens")
    for built, extra in ((backbone, 0), (with_extra, 2)):
        config = built.config()
        _require(
            isinstance(config, Mapping) and config.get("extra_tokens") == extra,
            entry,
            "config() returns the constructor arguments (for checkpoints), extra_tokens included",
        )


# --- augmentations ------------------------------------------------------------------------------


def check_augmentation(entry: ComponentEntry) -> None:
    import torch

    augmentation = entry.load()(options_for(entry))
    image = torch.rand(3, 48, 40)
    views = augmentation(image, generator=torch.Generator().manual_seed(0))
    again = augmentation(image, generator=torch.Generator().manual_seed(0))
    n_views = len(views.crops)
    _require(n_views >= 2 and 1 <= views.n_global <= n_views, entry, "at least two views, globals first")
    _require(views.boxes.shape == (n_views, 4), entry, "boxes (V,4)")
    boxes = views.boxes
    _require(bool(((boxes >= 0) & (boxes <= 1)).all()), entry, "boxes in normalised image coordinates [0,1]")
    _require(bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()), entry, "x0<x1, y0<y1")
    _require(views.flips.shape == (n_views,) and views.flips.dtype == torch.bool, entry, "flips (V,) bool")
    _require(all(c.ndim == 3 and c.shape[0] == 3 for c in views.crops), entry, "crops (3,h,w)")
    _require(all(torch.equal(a, b) for a, b in zip(views.crops, again.crops, strict=True)), entry, "seeded determinism")
    from dssl.augment.multicrop import collate_views

    batch = collate_views([views, again])
    _require(batch.boxes.shape == (2, n_views, 4), entry, "collated boxes (B,V,4)")


# --- datasets -----------------------------------------------------------------------------------


def check_dataset(entry: ComponentEntry) -> None:
    import tempfile
    from pathlib import Path

    import torch

    from dssl.registry import import_target

    build = entry.load()
    options = options_for(entry)
    fixture = entry.metadata.get("test_fixture")
    _require(
        fixture is not None or not entry.metadata.get("requires_data"),
        entry,
        "a dataset with requires_data=True needs test_fixture='module:writer' (writer(folder) -> data_root)",
    )
    # Datasets read from --data-root are built on a tiny copy in their real format that their writer puts
    # in a temporary folder; generated datasets get data_root=None as before.
    with tempfile.TemporaryDirectory(prefix="dssl-conformance-") as tmp:
        data_root = Path(import_target(fixture)(Path(tmp))) if fixture is not None else None
        for split in ("train", "val"):
            dataset = build(options, split=split, data_root=data_root)
            _require(len(dataset) > 0, entry, f"{split} split is empty")
            for attribute in ("num_classes", "ignore_index", "class_names"):
                _require(hasattr(dataset, attribute), entry, f"dataset needs `{attribute}`")
            _require(len(dataset.class_names) == dataset.num_classes, entry, "one class name per class")
            item = dataset[0]
            image, mask = item["image"], item.get("mask")
            _require(
                image.ndim == 3 and image.shape[0] == 3 and image.dtype == torch.float32, entry, "image (3,H,W) f32"
            )
            _require(float(image.min()) >= 0 and float(image.max()) <= 1, entry, "image values in [0,1]")
            if mask is not None:
                _require(mask.shape == image.shape[1:] and mask.dtype == torch.int64, entry, "mask (H,W) int64")
                valid = mask[mask != dataset.ignore_index]
                _require(
                    bool(((valid >= 0) & (valid < dataset.num_classes)).all()), entry, "mask ids in [0, C) or ignore"
                )


# --- evaluators ---------------------------------------------------------------------------------


class TinySegmentation:
    """Eight 32x32 images of three classes in blocks; a dataset for evaluator checks."""

    num_classes = 3
    ignore_index = 255
    class_names = ("a", "b", "c")

    def __init__(self, seed: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.masks = torch.randint(0, 3, (8, 4, 4), generator=generator).repeat_interleave(8, 1).repeat_interleave(8, 2)
        self.masks[:, 0, 0] = 255
        colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])
        self.images = colours[self.masks.clamp(max=2)].permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        mask = self.masks[index].long()
        # Image-level label for the classification evaluators (knn, linear_cls): the majority class.
        label = int(mask[mask != self.ignore_index].bincount(minlength=self.num_classes).argmax())
        return {"image": self.images[index], "mask": mask, "label": label}


def _colour_features(images: Any) -> Any:
    import torch.nn.functional as F

    return F.avg_pool2d(images, 8).permute(0, 2, 3, 1)


def _colour_image_features(images: Any) -> Any:
    return images.mean(dim=(2, 3))


def check_evaluator(entry: ComponentEntry) -> None:
    evaluator = entry.load()(options_for(entry))
    kind = getattr(evaluator, "feature_kind", "dense")
    _require(kind in ("dense", "image"), entry, f"feature_kind must be 'dense' or 'image', got {kind!r}")
    result = evaluator.evaluate(
        features=_colour_features if kind == "dense" else _colour_image_features,
        train=TinySegmentation(0),
        val=TinySegmentation(1),
        dataset_name="tiny",
        device="cpu",
    )
    from dssl.results import EvaluationResult

    _require(isinstance(result, EvaluationResult), entry, "evaluate() returns an EvaluationResult")
    _require(bool(result.protocol) and result.protocol_version >= 1, entry, "protocol id and version >= 1")
    declared = entry.metadata.get("protocol")
    _require(declared in (None, result.protocol), entry, f"protocol {result.protocol!r} != registered {declared!r}")
    _require(bool(result.metrics), entry, "at least one metric")
    for name, metric in result.metrics.items():
        _require(math.isfinite(metric.value), entry, f"metric {name} is finite")
        _require(metric.direction in ("higher", "lower"), entry, f"metric {name} has a direction")
    _require(bool(result.settings), entry, "settings that change the numbers are recorded")
    from dssl.catalogue import load_catalogue

    known = load_catalogue().protocols.get(result.protocol)
    if known is not None:
        _require(known.version == result.protocol_version, entry, "protocol version matches registry.yaml")


# --- objectives ---------------------------------------------------------------------------------


def _view_batch(objective_entry: ComponentEntry, seed: int) -> Any:
    import torch

    from dssl.augment.multicrop import collate_views
    from dssl.host import get_host

    host = get_host()
    augmentation_entry = host.get("augmentation", objective_entry.metadata.get("default_augmentation", "multicrop"))
    augmentation = augmentation_entry.load()(options_for(augmentation_entry))
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 48, 48, generator=generator)
    return collate_views([augmentation(image, generator=generator) for image in images])


def build_objective(entry: ComponentEntry, *, seed: int = 0, total_steps: int = 4) -> Any:
    import torch

    from dssl.host import get_host

    torch.manual_seed(seed)
    cls = entry.load()
    options = options_for(entry)
    backbone_entry = get_host().get("backbone", REFERENCE_BACKBONE)
    backbone = build_backbone(backbone_entry, extra_tokens=cls.extra_tokens(options), img_size=IMAGE_SIZE)
    return cls(backbone, options, total_steps=total_steps)


def check_objective(entry: ComponentEntry) -> None:
    import torch

    objective = build_objective(entry)
    objective.train()
    batch = _view_batch(entry, seed=0)
    outputs = objective(batch, step=0)
    loss = outputs.get("loss")
    _require(isinstance(loss, torch.Tensor) and loss.ndim == 0, entry, "forward returns a scalar 'loss'")
    _require(bool(torch.isfinite(loss)), entry, "loss is finite")
    _require(loss.requires_grad, entry, "loss depends on trainable parameters")
    terms = tuple(getattr(objective, "loss_terms", ("loss",)))
    missing = [t for t in terms if t not in outputs]
    _require(not missing, entry, f"forward returns every term of loss_terms (missing: {', '.join(missing)})")
    _require(
        all(isinstance(outputs[t], torch.Tensor) and bool(torch.isfinite(outputs[t]).all()) for t in terms),
        entry,
        "every loss term is a finite tensor",
    )
    loss.backward()
    backbone_grads = [p.grad for p in objective.backbone.parameters() if p.grad is not None]
    _require(any(bool(g.abs().sum() > 0) for g in backbone_grads), entry, "gradients reach the backbone")
    groups = objective.param_groups()
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in objective.parameters() if p.requires_grad}
    _require(len(grouped) == len(set(grouped)), entry, "no parameter appears in two groups")
    _require(set(grouped) == trainable, entry, "param_groups cover exactly the trainable parameters")
    hooks = (("before_optimizer_step", objective.before_optimizer_step), ("after_step", objective.after_step))
    for clause, call in hooks:
        try:
            call(step=0)
        except Exception as exc:
            raise ConformanceError(f"objective '{entry.name}': {clause} failed: {exc}") from exc
    evaluated = objective.eval_backbone()
    with torch.no_grad():
        features = evaluated.features(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    _require(features.ndim == 4 and features.shape[0] == 1, entry, "eval_backbone().features gives (B,h,w,D)")
    state = objective.state_for_checkpoint()
    build_objective(entry, seed=1).load_checkpoint_state(state)

    # Same seed, same loss.
    first = build_objective(entry, seed=3)(_view_batch(entry, seed=5), step=0)["loss"]
    second = build_objective(entry, seed=3)(_view_batch(entry, seed=5), step=0)["loss"]
    _require(bool(torch.equal(first, second)), entry, "same seed gives the same loss")


CHECKS: dict[str, Callable[[ComponentEntry], None]] = {
    "backbone": check_backbone,
    "augmentation": check_augmentation,
    "dataset": check_dataset,
    "evaluator": check_evaluator,
    "objective": check_objective,
}
