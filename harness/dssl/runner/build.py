"""Building a run: its datasets, augmentation, backbone with its initial weights and objective, validated.

Everything here happens before the MLflow run starts, so that bad input (an unknown backbone, a corrupt
checkpoint, an image size the patch size does not divide) exits with code 2 and leaves no FAILED run behind.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dssl.config import RunConfig, resolve_backbone_entry
from dssl.errors import ConfigError
from dssl.host import PluginHost


@dataclass
class BuiltRun:
    """The components of a run, built and validated, before anything is trained or logged.

    An evaluation-only run (``dssl eval``, :func:`build_eval_run`) has no training set, augmentation or
    objective: it carries the ``backbone`` it evaluates and the ``label`` that names those weights.
    """

    config: RunConfig
    device: torch.device
    train_set: Any
    eval_train: Any
    eval_val: Any
    augmentation: Any
    objective: nn.Module | None
    init_report: str
    plugins: dict[str, str]
    start_backbone: nn.Module | None = None
    init: str = "random"
    backbone: nn.Module | None = None
    label: str | None = None

    @property
    def evaluation_only(self) -> bool:
        """Nothing is trained: the weights of ``backbone.init`` are evaluated as they are."""
        return self.objective is None

    def evaluated_backbone(self) -> nn.Module:
        """The network the evaluators see: the objective's (DINO: the teacher), or an evaluation-only run's."""
        if self.objective is None:
            assert self.backbone is not None  # build_eval_run sets it
            return self.backbone
        return self.objective.eval_backbone()  # type: ignore[operator]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available (use --device cpu or auto)")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per local rank
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(requested)


def component_options(entry: Any, values: Mapping[str, Any]) -> Any:
    model = entry.options_model()
    return model.model_validate(dict(values)) if model is not None else None


def build_run(config: RunConfig, host: PluginHost) -> BuiltRun:
    """Build datasets, augmentation, backbone (with its initial weights) and objective."""
    from dssl.backbones.checkpoint import load_init
    from dssl.engine.distributed import init_from_env
    from dssl.engine.seeding import seed_everything

    device = resolve_device(config.device)
    init_from_env(device).local_batch_size(config.optim.batch_size)
    seed_everything(config.seed)

    dataset_entry = host.get("dataset", config.dataset.name)
    dataset_options = component_options(dataset_entry, config.dataset.options)
    build_dataset = dataset_entry.load()
    data_root = resolve_data_root(config.data_root)
    train_set = build_dataset(dataset_options, split="train", data_root=data_root)
    eval_train, eval_val = build_eval_datasets(config, host, train_set=train_set)

    assert config.augmentation.name is not None  # filled in by validate_components
    augmentation_entry = host.get("augmentation", config.augmentation.name)
    augmentation_options = component_options(augmentation_entry, config.augmentation.options)
    augmentation = augmentation_entry.load()(augmentation_options)

    objective_entry = host.get("objective", config.objective.name)
    objective_cls = objective_entry.load()
    objective_options = component_options(objective_entry, config.objective.options)

    backbone = build_backbone(config, host, augmentation_options=augmentation_options)
    check_views_fit(augmentation, train_set, backbone.patch_size, config.seed)
    init = resolve_init(config.backbone.init, config.backbone.name)
    init_report = load_init(backbone, init)
    if config.backbone.init == "warmstart" and init == "random":
        init_report.source = f"random (no warm start for {config.backbone.name})"
    objective = objective_cls(backbone, objective_options, total_steps=config.optim.steps)
    extras = objective.load_init_extras(init) if init not in ("random", "timm") else None
    objective = objective.to(device)
    plugins = {r.distribution: r.version for r in host.records if r.status == "loaded"}
    # The evaluated network as training finds it, kept aside when the run compares itself with its start.
    keep_start = "start" in config.baselines or ("random" in config.baselines and init == "random")
    start_backbone = copy.deepcopy(objective.eval_backbone()) if keep_start else None
    return BuiltRun(
        config=config,
        device=device,
        train_set=train_set,
        eval_train=eval_train,
        eval_val=eval_val,
        augmentation=augmentation,
        objective=objective,
        init_report=init_report.summary() + (f"; {extras}" if extras else ""),
        plugins=plugins,
        start_backbone=start_backbone,
        init=init,
    )


def build_eval_run(config: RunConfig, host: PluginHost, *, label: str | None = None) -> BuiltRun:
    """Build what evaluating ``backbone.init`` as it is needs: the evaluation datasets and the initialised backbone.

    Nothing of training is built (no training set, augmentation or objective). The backbone is the one
    ``dssl bench`` would train (alias, options, input size) with the extra tokens a dssl checkpoint records,
    so that ``--init runs:/ID`` evaluates exactly the network that run evaluated; ``random`` draws the weights
    from the run's seed, as the random-init baseline of ``dssl bench`` does.

    Args:
        config: The resolved configuration (its training settings are ignored).
        host: Plugin host.
        label: The name of the weights on the leaderboard; default :func:`default_eval_label`.
    """
    from dssl.backbones.checkpoint import load_init
    from dssl.engine.seeding import seed_everything

    device = resolve_device(config.device)
    eval_train, eval_val = build_eval_datasets(config, host)
    init = resolve_init(config.backbone.init, config.backbone.name)
    seed_everything(config.seed)  # random init: the weights a random-init run of this seed starts from
    backbone = build_backbone(config, host, extra_tokens=_recorded_extra_tokens(init))
    init_report = load_init(backbone, init)
    if config.backbone.init == "warmstart" and init == "random":
        init_report.source = f"random (no warm start for {config.backbone.name})"
    return BuiltRun(
        config=config,
        device=device,
        train_set=None,
        eval_train=eval_train,
        eval_val=eval_val,
        augmentation=None,
        objective=None,
        init_report=init_report.summary(),
        plugins={r.distribution: r.version for r in host.records if r.status == "loaded"},
        init=init,
        backbone=backbone.to(device),
        label=label or default_eval_label(config.backbone.init),
    )


def _recorded_extra_tokens(init: str) -> int:
    """The extra prefix tokens (UDI's, STELLAR's) a dssl backbone checkpoint was saved with; 0 for other inits."""
    from dssl.backbones.checkpoint import CHECKPOINT_FORMAT, checkpoint_entry

    if init in ("random", "timm") or not Path(init).is_file():
        return 0
    if checkpoint_entry(init, "format") != CHECKPOINT_FORMAT:
        return 0
    return int(checkpoint_entry(init, "config", "extra_tokens") or 0)


def default_eval_label(init: str) -> str:
    """The leaderboard name of weights evaluated without training, from what ``--init`` says.

    ``random`` -> ``random init``, ``timm`` -> ``timm pretrained``, ``runs:/ID`` -> ``run ID[:8]``,
    ``warmstart[:NAME]`` as given, a file -> its name without the suffix.
    """
    if init == "random":
        return "random init"
    if init == "timm":
        return "timm pretrained"
    if init.startswith("runs:/"):
        return f"run {init.removeprefix('runs:/').strip('/')[:8]}"
    if init == "warmstart" or init.startswith("warmstart:"):
        return init
    return Path(init).stem or init


def build_eval_datasets(config: RunConfig, host: PluginHost, *, train_set: Any = None) -> tuple[Any, Any]:
    """The evaluators' train and val splits: ``eval_dataset``'s, else the training dataset's.

    Args:
        config: The run configuration.
        host: Plugin host (dataset registry).
        train_set: The already built training split, reused as the evaluators' train split when the run has
            no separate ``eval_dataset``.
    """
    spec = config.eval_dataset or config.dataset
    entry = host.get("dataset", spec.name)
    options = component_options(entry, spec.options)
    build = entry.load()
    data_root = resolve_data_root(config.data_root)
    if config.eval_dataset is None and train_set is not None:
        eval_train = train_set
    else:
        eval_train = build(options, split="train", data_root=data_root)
    return eval_train, build(options, split="val", data_root=data_root)


def build_backbone(
    config: RunConfig, host: PluginHost, *, augmentation_options: Any = None, extra_tokens: int | None = None
) -> nn.Module:
    """The run's backbone at random init: its alias/timm name, input size and the objective's extra tokens.

    Args:
        config: The run configuration.
        host: Plugin host (backbone and objective registries).
        augmentation_options: The validated augmentation options (their ``global_size`` is the default
            input size); validated from ``config`` when ``None``.
        extra_tokens: Extra prefix tokens; default: those the objective adds.
    """
    if augmentation_options is None and config.augmentation.name is not None:
        entry = host.get("augmentation", config.augmentation.name)
        augmentation_options = component_options(entry, config.augmentation.options)
    objective_entry = host.get("objective", config.objective.name)
    objective_options = component_options(objective_entry, config.objective.options)
    backbone_entry = resolve_backbone_entry(host, config.backbone.name)
    backbone_options = dict(config.backbone.options)
    img_size = backbone_options.pop("img_size", None) or getattr(augmentation_options, "global_size", None) or 224
    if backbone_entry.metadata.get("timm_args"):
        backbone_options["timm_args"] = backbone_entry.metadata["timm_args"]
    return backbone_entry.load()(
        name=config.backbone.name,
        timm_name=backbone_entry.metadata.get("timm_name"),
        img_size=img_size,
        extra_tokens=objective_entry.load().extra_tokens(objective_options) if extra_tokens is None else extra_tokens,
        **backbone_options,
    )


def resolve_data_root(configured: str | None) -> Path | None:
    """``data_root`` from the config, else ``$DSSL_DATA_ROOT``, else None (only generated data then)."""
    import os

    value = configured or os.environ.get("DSSL_DATA_ROOT")
    return Path(value).expanduser() if value else None


def check_views_fit(augmentation: Any, dataset: Any, patch_size: int, seed: int) -> None:
    """Render one sample's views now, so that a crop size the patch size does not divide is a config error."""
    views = augmentation(dataset[0]["image"], generator=torch.Generator().manual_seed(seed))
    for index, crop in enumerate(views.crops):
        height, width = crop.shape[-2:]
        if height % patch_size or width % patch_size:
            kind = "global" if index < views.n_global else "local"
            raise ConfigError(
                f"{kind} view {index} is {height}x{width} pixels, not a multiple of the patch size {patch_size}; "
                f"choose augmentation.options.global_size/local_size divisible by {patch_size}"
            )


def resolve_init(init: str, backbone: str | None = None) -> str:
    """The local file (or ``random`` / ``timm``) an ``--init`` value names.

    ``runs:/RUN_ID`` is that run's logged backbone checkpoint; ``warmstart`` is the warm start that
    ``registry.yaml`` lists for ``backbone`` (random init when there is none), ``warmstart:NAME`` a named one.
    """
    if init == "warmstart" or init.startswith("warmstart:"):
        from dssl.catalogue import load_catalogue

        warm = load_catalogue().warmstart_for(init, backbone or "")
        if warm is None:
            return "random"
        if not warm.path().is_file():
            raise ConfigError(f"--init {init}: the warm start file {warm.path()} is missing from this installation")
        return str(warm.path())
    if not init.startswith("runs:/"):
        return init
    run_id = init.removeprefix("runs:/").strip("/")
    from dssl.tracking.mlflow_tracker import default_tracking_uri

    try:
        import mlflow

        return mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoints/backbone.pt", tracking_uri=default_tracking_uri()
        )
    except Exception as exc:  # mlflow raises several unrelated types for a missing run or artifact
        raise ConfigError(f"--init {init}: cannot fetch checkpoints/backbone.pt from that run: {exc}") from None
