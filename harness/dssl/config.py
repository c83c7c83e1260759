"""Run configuration: pydantic models and their resolution from layered sources.

Precedence, lowest first: model defaults < preset (``registry.yaml``; ``cpu`` without a GPU, ``gpu``
with one) < YAML file (``--config``) < CLI flags < ``--set key.path=value`` (repeatable). Each
component validates its own options with the pydantic model it registered.

Example:
    >>> cfg = resolve_config(cli={"objective.name": "dino"}, sets=["optim.lr=0.001"], check_components=False)
    >>> cfg.optim.lr
    0.001
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dssl.errors import ConfigError
from dssl.validation import describe_validation_error

if TYPE_CHECKING:
    from dssl.host import PluginHost
    from dssl.registry import ComponentKind


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackboneConfig(_Section):
    name: str = Field("vit_t16", description="Alias from registry.yaml or any timm ViT name.")
    init: str = Field(
        "random",
        description="random | timm (cached pretrained weights) | a local checkpoint path | runs:/RUN_ID.",
    )
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectiveConfig(_Section):
    name: str = Field("dino", description="A registered objective.")
    options: dict[str, Any] = Field(default_factory=dict)


class AugmentationConfig(_Section):
    name: str | None = Field(None, description="A registered augmentation; default: the objective's own.")
    options: dict[str, Any] = Field(default_factory=dict)


class DatasetConfig(_Section):
    name: str = Field("embedded", description="A registered dataset.")
    options: dict[str, Any] = Field(default_factory=dict)
    bad_images: Literal["skip", "error"] | None = Field(
        None,
        description="An image file that cannot be decoded (empty, truncated, not an image): 'skip' replaces it by "
        "the next readable image and reports the files (tag dssl.bad_images, artifact bad_images.txt); 'error' "
        "stops the run naming the file. Default: skip for the training set, error for evaluation, which never "
        "replaces an image.",
    )


class OptimConfig(_Section):
    steps: int = Field(300, gt=0, description="Optimiser steps.")
    batch_size: int = Field(32, gt=0, description="Images per step (each yields several views).")
    lr: float = Field(5e-4, gt=0, description="Peak learning rate for batch size 256 (scaled linearly, as DINO).")
    min_lr: float = Field(1e-6, ge=0)
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.04, ge=0)
    weight_decay_end: float = Field(0.4, ge=0)
    clip_grad: float | None = Field(3.0, gt=0, description="Max gradient norm; null disables clipping.")
    clip_mode: Literal["per_param", "global"] = Field(
        "per_param",
        description="per_param: each parameter's gradient norm is clipped on its own (DINO's utils.clip_gradients); "
        "global: one norm over all gradients (torch.nn.utils.clip_grad_norm_).",
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")


class TrackingConfig(_Section):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or ./mlflow.db.")
    experiment: str = Field("dssl", min_length=1)
    run_name: str | None = None
    retry_every_s: float = Field(
        30.0,
        gt=0,
        description="While the tracking server is unreachable, seconds between attempts to upload the records "
        "queued in the run folder (each attempt also makes MLflow's own HTTP retries).",
    )
    flush_timeout_s: float = Field(
        120.0,
        ge=0,
        description="How long the end of a run waits for an unreachable tracking server before it leaves the "
        "queued records for `dssl sync RUN_FOLDER`.",
    )

    @field_validator("uri")
    @classmethod
    def _no_credentials_in_uri(cls, uri: str | None) -> str | None:
        if uri is not None:
            from dssl.tracking.credentials import check_uri_has_no_credentials

            check_uri_has_no_credentials(uri, key="tracking.uri")
        return uri


class RunConfig(_Section):
    """Everything that defines one run."""

    preset: str | None = Field(None, description="Preset from registry.yaml; default cpu or gpu by device.")
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA, fp32 on CPU.")
    compile: bool = Field(
        False,
        description="torch.compile the backbone blocks and the loss while training (schedules stay eager; "
        "the first step compiles).",
    )
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    eval_dataset: DatasetConfig | None = Field(
        None, description="Dataset the evaluators use (its train and val splits); default: the training dataset."
    )
    evaluators: list[str] = Field(default_factory=lambda: ["linear_seg", "kmeans_seg"])
    evaluator_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(0, ge=0, description="Steps between checkpoints; 0: only at the end.")
    baselines: list[Literal["start", "random"]] = Field(
        default_factory=list,
        description="Also evaluate, with the same evaluators, the backbone the run started from (start: its "
        "--init) and/or the same architecture at random init (random), and show them beside the trained numbers.",
    )
    output_dir: str = Field("dssl-runs", description="Local folder for checkpoints and results.")
    data_root: str | None = Field(
        None, description="Folder holding the real datasets (default $DSSL_DATA_ROOT); the embedded one needs none."
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    preempt_signals: list[str] = Field(
        default_factory=lambda: ["SIGTERM", "SIGUSR1"],
        description="Signals that preempt the run: it finishes the current step, writes its checkpoint, marks the "
        "MLflow run KILLED (tag dssl.preempted) and exits with status 75 (requeue). Empty: none.",
    )

    @field_validator("preempt_signals")
    @classmethod
    def _known_signals(cls, names: list[str]) -> list[str]:
        from dssl.engine.preemption import parse_signals

        try:
            return parse_signals(names)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("preempt_signals: ")) from None

    @model_validator(mode="after")
    def _evaluator_options_are_for_selected(self) -> RunConfig:
        stray = sorted(set(self.evaluator_options) - set(self.evaluators))
        if stray:
            raise ValueError(f"evaluator_options given for evaluators not selected: {', '.join(stray)}")
        return self

    @model_validator(mode="after")
    def _evaluation_never_skips_images(self) -> RunConfig:
        if self.eval_dataset is not None and self.eval_dataset.bad_images == "skip":
            raise ValueError(
                "eval_dataset.bad_images: evaluation never replaces an image (that would change the protocol's "
                "set); accepted: error (the default) — fix or remove the file instead"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self, *, trained: bool = True) -> str:
        """Hash of what changes the numbers (not where they are logged): identifies a grid cell.

        Args:
            trained: ``False`` for an evaluation-only run (``dssl eval``), whose numbers do not depend on
                the training settings (see :func:`numbers_of`).
        """
        return _digest(numbers_of(self.to_dict(), trained=trained))

    def row_key(self, evaluator: str, *, trained: bool = True) -> str:
        """Hash of what changes ``evaluator``'s numbers apart from the seed: runs sharing it are one leaderboard row.

        Args:
            evaluator: A selected evaluator.
            trained: ``False`` for an evaluation-only run.
        """
        return _digest(comparable_settings(self.to_dict(), evaluator, trained=trained))


#: Keys of a run configuration that never change its numbers: where they are logged and stored, how often the
#: loss is printed, where the data lives, what is evaluated beside the run, which signals stop it.
VOLATILE_KEYS = ("tracking", "output_dir", "log_every", "data_root", "baselines", "preempt_signals")
#: Keys that only shape training: an evaluation-only run's numbers do not depend on them.
TRAINING_KEYS = ("objective", "augmentation", "dataset", "optim", "compile", "checkpoint_every")


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def numbers_of(config: Mapping[str, Any], *, trained: bool = True) -> dict[str, Any]:
    """What in a configuration (a :meth:`RunConfig.to_dict`) changes a run's numbers.

    Args:
        config: The resolved configuration as plain data.
        trained: ``False`` for an evaluation-only run: the training keys are left out and the evaluation
            dataset is named explicitly (``eval_dataset`` unset evaluates on ``dataset``).
    """
    data = copy.deepcopy(dict(config))
    for volatile in VOLATILE_KEYS:
        data.pop(volatile, None)
    # The bad-image policy never changes the numbers of a run that finishes ("error" stops at the first
    # unreadable image), and leaving it out keeps the fingerprints of earlier runs.
    for section in ("dataset", "eval_dataset"):
        if isinstance(data.get(section), dict):
            data[section].pop("bad_images", None)
    backbone = data.get("backbone")
    if isinstance(backbone, dict) and backbone.get("init") == "warmstart":
        backbone["init"] = canonical_warmstart(str(backbone.get("name")))
    if not trained:
        data["eval_dataset"] = data.get("eval_dataset") or data.get("dataset")
        for key in TRAINING_KEYS:
            data.pop(key, None)
    return data


def canonical_warmstart(backbone: str) -> str:
    """What ``--init warmstart`` starts ``backbone`` from, as an init value naming it: ``warmstart:NAME`` for the
    warm start ``registry.yaml`` lists for the backbone, ``random`` when there is none (so that a run on a backbone
    without a warm start is the same configuration, and leaderboard row, as its random-init run)."""
    from dssl.catalogue import load_catalogue

    warm = load_catalogue().warmstart_for("warmstart", backbone)
    if warm is None:
        return "random"
    name = next(key for key, value in load_catalogue().warmstarts.items() if value is warm)
    return f"warmstart:{name}"


def comparable_settings(config: Mapping[str, Any], evaluator: str, *, trained: bool = True) -> dict[str, Any]:
    """What changes ``evaluator``'s numbers in a configuration apart from the seed, as flat dotted keys.

    The seed, the list of evaluators and the other evaluators' options are left out (two runs that differ in
    them measure this evaluator's number alike), and the evaluation dataset is named explicitly.

    Args:
        config: The resolved configuration as plain data (:meth:`RunConfig.to_dict`, a run's ``config.yaml``).
        evaluator: The evaluator whose numbers are compared.
        trained: ``False`` for an evaluation-only run.

    Returns:
        ``{"optim.steps": 200, "backbone.init": "random", ...}``.
    """
    data = numbers_of(config, trained=trained)
    data.pop("seed", None)
    data.pop("evaluators", None)
    data["evaluator_options"] = {evaluator: (data.get("evaluator_options") or {}).get(evaluator, {})}
    data["eval_dataset"] = data.get("eval_dataset") or data.get("dataset")
    return dict(_flat(data))


def _flat(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# --- layering -----------------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge mappings; lists and scalars in ``override`` replace those in ``base``."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_to_nested(key: str, value: Any) -> dict[str, Any]:
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"invalid key path {key!r}: expected dotted names such as optim.lr")
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def parse_set(assignment: str) -> dict[str, Any]:
    """``"optim.lr=1e-3"`` -> ``{"optim": {"lr": 0.001}}``; the value is read as a YAML scalar/list."""
    key, sep, raw = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML") from None
    if isinstance(value, str):
        # PyYAML follows YAML 1.1, where "1e-3" is a string; users mean a number.
        with contextlib.suppress(ValueError):
            value = float(value)
    return dotted_to_nested(key.strip(), value)


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        from dssl.catalogue import _yaml_problem

        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping of keys, not {type(data).__name__}")
    return data


def default_preset(device: str) -> str:
    """``gpu`` when the run will use CUDA, else ``cpu``; only probes torch when device is auto."""
    if device == "cuda":
        return "gpu"
    if device == "cpu":
        return "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


_DEFAULT_DATASET: str = DatasetConfig.model_fields["name"].default


def _section(layer: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = layer.get(key)
    return value if isinstance(value, Mapping) else {}


def preset_datasets_for(preset: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's dataset settings, kept only where they concern the datasets the run will use.

    A preset's ``dataset`` options are for the preset's training dataset and its ``eval_dataset`` for that
    training dataset's evaluation; neither may reach another dataset the user picked:

    * the user names another training dataset (``--dataset X``): the preset's ``dataset`` name and options
      are dropped, and so is its ``eval_dataset`` unless the user names that very dataset for evaluation —
      the run then evaluates on ``X`` (``eval_dataset`` unset means the training dataset);
    * the user names an evaluation dataset (``--eval-dataset Y``): the preset's ``eval_dataset`` options
      apply only when ``Y`` is the preset's evaluation dataset.

    Args:
        preset: The preset layer (``registry.yaml`` preset merged with its per-objective settings).
        user: Every layer above the preset merged (``--config``, flags, ``--set``).

    Returns:
        A copy of ``preset`` without the settings that do not apply.
    """
    kept = copy.deepcopy(dict(preset))
    preset_train = _section(kept, "dataset").get("name") or _DEFAULT_DATASET
    train = _section(user, "dataset").get("name") or preset_train
    if train != preset_train and isinstance(kept.get("dataset"), dict):
        kept["dataset"].pop("name", None)
        kept["dataset"].pop("options", None)
    preset_eval = kept.get("eval_dataset")
    if isinstance(preset_eval, Mapping):
        asked = _section(user, "eval_dataset").get("name")
        applies = asked == (preset_eval.get("name") or preset_train) if asked else train == preset_train
        if not applies:
            del kept["eval_dataset"]
    return kept


def preset_augmentation_for(preset: Mapping[str, Any], partial: RunConfig, host: PluginHost | None) -> dict[str, Any]:
    """A preset's augmentation options, kept only where the run's augmentation has them.

    Presets speak the multi-crop vocabulary (``global_size``, ``local_size``, ``n_local``, ...), which dssl's
    multi-crop and the augmentations built on it share; an augmentation with other options (a plugin's own)
    does not get the ones it lacks. Options the user sets are never dropped: a wrong key there still fails.

    Args:
        preset: The preset layer.
        partial: The user's layers validated on their own (their objective and augmentation names).
        host: Plugin host (the augmentation's options model); default: the process-wide one.

    Returns:
        A copy of ``preset`` without the augmentation options the augmentation does not accept.
    """
    from dssl.errors import DsslError
    from dssl.host import get_host

    kept = copy.deepcopy(dict(preset))
    options = _section(_section(kept, "augmentation"), "options")
    if not options:
        return kept
    host = host or get_host()
    try:
        name = partial.augmentation.name or _section(kept, "augmentation").get("name")
        if name is None:
            name = host.get("objective", partial.objective.name).metadata.get("default_augmentation", "multicrop")
        model = host.get("augmentation", name).options_model()
    except DsslError:
        return kept  # an unknown name: validation names it
    accepted = set(model.model_fields) if model is not None else set()
    kept["augmentation"]["options"] = {key: value for key, value in options.items() if key in accepted}
    return kept


def resolve_config(
    *,
    base: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    cli: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    host: PluginHost | None = None,
    check_components: bool = True,
) -> RunConfig:
    """Layer the sources (see module docstring) and validate; raises :class:`ConfigError` on bad input.

    Args:
        base: A mapping layered just above the preset (the Python API's ``config`` argument).
        config_file: YAML file (``--config``), read with safe loading.
        cli: Flat dotted keys from CLI flags, e.g. ``{"optim.steps": 10}``; ``None`` values are skipped.
        sets: ``key.path=value`` strings (``--set``), applied last.
        host: Plugin host used to check component names and options; default: the process-wide one.
        check_components: Validate component names and their options against the registry.
    """
    user: dict[str, Any] = deep_merge({}, base or {})
    if config_file is not None:
        user = deep_merge(user, read_yaml_config(config_file))
    for key, value in (cli or {}).items():
        if value is not None:
            user = deep_merge(user, dotted_to_nested(key, value))
    for assignment in sets:
        user = deep_merge(user, parse_set(assignment))

    # The preset depends on the device and objective the user chose, so it is layered under `user` last.
    try:
        partial = RunConfig.model_validate(user)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model=RunConfig)) from None
    preset = partial.preset or default_preset(partial.device)
    from dssl.catalogue import load_catalogue

    preset_layer = preset_datasets_for(load_catalogue().preset_layer(preset, partial.objective.name), user)
    if check_components:
        preset_layer = preset_augmentation_for(preset_layer, partial, host)
    layered = deep_merge(preset_layer, user)
    layered["preset"] = preset
    if isinstance(layered.get("eval_dataset"), Mapping) and not layered["eval_dataset"].get("name"):
        # Evaluation options given without a dataset name are for the dataset the run trains on.
        layered["eval_dataset"]["name"] = (layered.get("dataset") or {}).get("name") or _DEFAULT_DATASET
    # A preset tunes evaluators the user may not run (e.g. STELLAR's knn settings with --eval linear_seg):
    # its settings for unselected evaluators are dropped; the user's own stray settings still fail.
    selected = set(
        layered.get("evaluators") or RunConfig.model_fields["evaluators"].get_default(call_default_factory=True)
    )
    user_options = set((user.get("evaluator_options") or {}).keys())
    if isinstance(layered.get("evaluator_options"), dict):
        layered["evaluator_options"] = {
            name: opts
            for name, opts in layered["evaluator_options"].items()
            if name in selected or name in user_options
        }
    try:
        config = RunConfig.model_validate(layered)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, model=RunConfig)) from None
    if check_components:
        config = validate_components(config, host)
    return config


def validate_components(config: RunConfig, host: PluginHost | None = None) -> RunConfig:
    """Check that every named component exists and validate (and fill in) its options."""
    from dssl.host import get_host

    host = host or get_host()
    objective = host.get("objective", config.objective.name)
    if config.augmentation.name is None:
        config.augmentation.name = objective.metadata.get("default_augmentation", "multicrop")
    sections: list[tuple[ComponentKind, str, dict[str, Any], str]] = [
        ("backbone", config.backbone.name, config.backbone.options, "backbone.options"),
        ("objective", config.objective.name, config.objective.options, "objective.options"),
        ("augmentation", config.augmentation.name, config.augmentation.options, "augmentation.options"),
        ("dataset", config.dataset.name, config.dataset.options, "dataset.options"),
    ]
    if config.eval_dataset is not None:
        sections.append(("dataset", config.eval_dataset.name, config.eval_dataset.options, "eval_dataset.options"))
    sections += [
        ("evaluator", name, config.evaluator_options.get(name, {}), f"evaluator_options.{name}")
        for name in config.evaluators
    ]
    resolved: dict[str, dict[str, Any]] = {}
    for kind, name, options, prefix in sections:
        entry = host.get(kind, name) if kind != "backbone" else resolve_backbone_entry(host, name)
        resolved[prefix] = validate_options(entry.options_model(), options, prefix=prefix)
    config.backbone.options = resolved["backbone.options"]
    config.objective.options = resolved["objective.options"]
    config.augmentation.options = resolved["augmentation.options"]
    config.dataset.options = resolved["dataset.options"]
    if config.eval_dataset is not None:
        config.eval_dataset.options = resolved["eval_dataset.options"]
    config.evaluator_options = {name: resolved[f"evaluator_options.{name}"] for name in config.evaluators}
    return config


def resolve_backbone_entry(host: PluginHost, name: str) -> Any:
    """A registered backbone, else the generic ``timm`` backbone when timm knows the name.

    Raises:
        UnknownComponentError: Neither a registered backbone nor a timm ViT name.
        ConfigError: A ViT-like name timm does not know, with the message the backbone's build gives (so that
            ``--dry-run`` fails as the run would).
    """
    from dssl.errors import UnknownComponentError

    try:
        return host.get("backbone", name)
    except UnknownComponentError:
        if ("backbone", "timm") in host.registry and name.startswith(("vit_", "deit", "eva", "flexivit")):
            # Imports timm, only for a name that is not registered: the build's own check of the name.
            from dssl.backbones.vit import resolve_model_name

            resolve_model_name(name)
            return host.get("backbone", "timm")
        raise


def validate_options(model: type[BaseModel] | None, options: Mapping[str, Any], *, prefix: str) -> dict[str, Any]:
    if model is None:
        if options:
            raise ConfigError(f"unknown key '{prefix}.{next(iter(options))}' (this component takes no options)")
        return {}
    try:
        return model.model_validate(dict(options)).model_dump(mode="json")
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, prefix=prefix, model=model)) from None
