"""The standard catalogue ``registry.yaml``: backbone aliases, datasets, protocols, presets, references.

Validated by pydantic when loaded; a malformed file raises :class:`~dssl.errors.ConfigError` naming the
entry. ``$DSSL_REGISTRY`` points at another file (tests, private catalogues).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from dssl.errors import ConfigError
from dssl.validation import describe_validation_error

REGISTRY_ENV = "DSSL_REGISTRY"
CATALOGUE_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneAlias(_Strict):
    timm_name: str
    summary: str
    timm_args: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        description="Architecture arguments passed to timm.create_model over the timm model's own "
        "(e.g. patch_size, embed_dim, depth, num_heads): a smaller timm ViT without a ViT of our own.",
    )


class DatasetDefinition(_Strict):
    summary: str
    layout: str
    num_classes: int | None = Field(None, gt=0, description="None when it depends on the data (image folders).")
    ignore_index: int


class ProtocolDefinition(_Strict):
    """A versioned evaluation protocol.

    Attributes:
        version: The current version (the evaluator class carries the same number).
        summary: What the protocol computes.
        reference: Papers and repositories (with commit) the protocol follows.
        reproduces: What the current version's numbers are comparable with.
        absent_classes: Its convention for classes absent from the ground truth (an
            ``AbsentClassPolicy``), for protocols that average IoUs over classes.
        history: Earlier versions -> what they computed and what they reproduced.
    """

    version: int = Field(ge=1)
    summary: str
    reference: str | None = None
    reproduces: str | None = None
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] | None = None
    history: dict[int, str] = Field(default_factory=dict)

    @field_validator("history")
    @classmethod
    def _earlier_versions(cls, history: dict[int, str], info: ValidationInfo) -> dict[int, str]:
        version = info.data.get("version")
        later = [v for v in history if version is not None and not 1 <= v < version]
        if later:
            raise ValueError(f"history lists versions {later}, which are not earlier than version {version}")
        return history

    def id(self, name: str) -> str:
        return f"{name}@{self.version}"


class Preset(_Strict):
    summary: str
    config: dict[str, Any] = Field(default_factory=dict)
    objectives: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-objective additions layered over `config`."
    )

    @field_validator("objectives", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # a section holding only comments reads as None


class WarmStart(_Strict):
    """A checkpoint that ships inside the package, for ``--init warmstart`` / ``--init warmstart:NAME``."""

    backbone: str = Field(description="The backbone alias it was trained for.")
    file: str = Field(description="Path inside the dssl package (harness/dssl/...).")
    summary: str
    recipe: str = Field(description="The command that reproduces it, and where and how long it ran.")

    def path(self) -> Path:
        return Path(__file__).parent / self.file

    def steps(self) -> int | None:
        """Training steps its provenance (the ``.json`` beside the checkpoint) records; ``None`` without one."""
        try:
            return int(json.loads(self.path().with_suffix(".json").read_text())["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


class FirstPartyPlugin(_Strict):
    distribution: str
    path: str
    components: list[str] = Field(default_factory=list)


class ReferenceResult(_Strict):
    method: str
    backbone: str
    dataset: str
    protocol: str
    metric: str
    value: float
    source: str
    direction: str = "higher"
    absent_classes: Literal["exclude_no_gt", "exclude_empty", "zero"] | None = None
    steps: int | None = Field(None, gt=0, description="Training steps behind the number, when it depends on them.")


#: The ``method`` of a reference that is a supervised ceiling: the backbone trained with the labels themselves.
SUPERVISED_CEILING = "supervised (masks as labels)"


class Catalogue(_Strict):
    schema_version: int
    backbones: dict[str, BackboneAlias]
    datasets: dict[str, DatasetDefinition] = Field(default_factory=dict)
    protocols: dict[str, ProtocolDefinition] = Field(default_factory=dict)
    presets: dict[str, Preset] = Field(default_factory=dict)
    warmstarts: dict[str, WarmStart] = Field(default_factory=dict)
    plugins: list[FirstPartyPlugin] = Field(default_factory=list)
    references: list[ReferenceResult] = Field(default_factory=list)

    @field_validator("plugins", "references", mode="before")
    @classmethod
    def _empty_list(cls, value: Any) -> Any:
        return [] if value is None else value  # a section holding only comments reads as None

    def supervised_ceiling(
        self, *, backbone: str, dataset: str, steps: int
    ) -> dict[tuple[str, str], tuple[float, int]]:
        """Measured supervised ceilings (:data:`SUPERVISED_CEILING` references) for a network of ``backbone`` trained
        ``steps`` steps in all, on ``dataset``: ``{(protocol id, metric): (value, its steps)}``.

        Each is the one measured at ``steps``, else at the largest smaller step count (a lower bound of the
        ceiling at ``steps``: measured ceilings grow with steps); none is measured at fewer steps than that.
        """
        found: dict[tuple[str, str], tuple[float, int]] = {}
        for r in self.references:
            if r.method != SUPERVISED_CEILING or r.backbone != backbone or r.dataset != dataset:
                continue
            if r.steps is not None and r.steps <= steps:
                key = (r.protocol, r.metric)
                if key not in found or r.steps > found[key][1]:
                    found[key] = (r.value, r.steps)
        return found

    def warmstart_for(self, init: str, backbone: str) -> WarmStart | None:
        """The warm start ``init`` names: ``warmstart`` (the one made for ``backbone``, if any) or
        ``warmstart:NAME``.

        Raises:
            ConfigError: An unknown name, or a warm start made for another backbone.
        """
        if init == "warmstart":
            return next((w for w in self.warmstarts.values() if w.backbone == backbone), None)
        name = init.removeprefix("warmstart:")
        if name not in self.warmstarts:
            from dssl.registry import unknown_name_message

            raise ConfigError(unknown_name_message("warm start", name, sorted(self.warmstarts)))
        chosen = self.warmstarts[name]
        if chosen.backbone != backbone:
            raise ConfigError(f"--init {init} was trained for the {chosen.backbone} backbone, not {backbone}")
        return chosen

    def steps_before(self, *, init: str, backbone: str) -> int | None:
        """Training steps a ``backbone`` starting from ``init`` has already had: 0 from random init (or from
        ``warmstart`` where ``backbone`` has none: it then starts from random init), a warm start's recorded
        steps; ``None`` where unknown (a checkpoint file, timm weights, a warm start without provenance or an
        invalid name), where no ceiling "for the same steps" applies."""
        if init == "random":
            return 0
        if init != "warmstart" and not init.startswith("warmstart:"):
            return None
        try:
            warm = self.warmstart_for(init, backbone)
        except ConfigError:
            return None
        return 0 if warm is None else warm.steps()

    def preset_layer(self, preset: str, objective: str | None) -> dict[str, Any]:
        from dssl.config import deep_merge

        if preset not in self.presets:
            from dssl.registry import unknown_name_message

            raise ConfigError(unknown_name_message("preset", preset, sorted(self.presets)))
        chosen = self.presets[preset]
        return deep_merge(chosen.config, chosen.objectives.get(objective or "", {}))


def registry_path() -> Path:
    """``$DSSL_REGISTRY``, else the file shipped next to the package (a link to the repo's top level)."""
    override = os.environ.get(REGISTRY_ENV)
    return Path(override) if override else Path(__file__).with_name("registry.yaml")


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    path = Path(path) if path is not None else registry_path()
    return _load_cached(path.resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> Catalogue:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"catalogue {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"catalogue {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"catalogue {path} must be a mapping at top level")
    if raw.get("schema_version") != CATALOGUE_SCHEMA_VERSION:
        raise ConfigError(
            f"catalogue {path}: schema_version {raw.get('schema_version')!r} is not supported "
            f"(expected {CATALOGUE_SCHEMA_VERSION})"
        )
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"catalogue {path}: {describe_validation_error(exc, model=Catalogue)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)
