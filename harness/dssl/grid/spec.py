"""The grid file: objectives x backbones x datasets x seeds, each cell evaluated by the same evaluators.

A grid file is YAML, validated by :class:`GridSpec` (unknown keys are errors)::

    name: cpu-smoke                  # optional; default: the file name without .yaml
    experiment: dssl                 # optional MLflow experiment (``dssl grid --experiment`` wins)
    base:                            # any keys of a run configuration (``dssl bench --config``), except
      preset: cpu                    # the axes below and ``tracking``
      optim: {steps: 40}
    set: [optim.lr=0.002]            # ``--set``-style overrides applied to every cell
    objectives:
      - dino
      - {name: cotap, label: cotap+oaf, set: [objective.options.filter=oaf]}
    backbones: [vit_t16]
    datasets: [embedded]
    evaluators: [linear_seg, kmeans_seg]
    seeds: [0, 1]
    overrides:                       # per-cell overrides, matched on labels
      - match: {objective: cotap+oaf, backbone: vit_t16}
        set: [optim.lr=0.001]
    checkpoints:                     # evaluation-only rows: weights evaluated as they are, never trained
      - {label: random-init, init: random}
      - {label: dinov2-s14, init: /ckpt/dinov2_vits14.pth, backbone: vit_s14_reg}
    also_evaluate_on:                # more evaluation datasets: each cell's weights, evaluated there too
      - {dataset: coco_stuff27, evaluators: [linear_seg]}

Each cell's configuration is layered, lowest first: defaults < preset < ``base`` < the cell's axis values
(objective, backbone, dataset, evaluators, seed) < ``set`` < the axis entries' ``set`` < matching
``overrides`` (in file order). A ``checkpoints`` entry is a row of its own next to the objectives (its label
shares their namespace, also in ``overrides``): one evaluation-only cell (``dssl eval``) per backbone (its own
``backbone``, else every backbone of the grid), dataset and seed.

The cells evaluate on ``base.eval_dataset`` (else their training dataset) with ``evaluators``. Each
``also_evaluate_on`` entry adds, after all of those, one evaluation-only cell per cell of the grid: the weights
that cell trained (or the checkpoint it evaluates) evaluated on the entry's dataset with the entry's evaluators,
under the cell's own settings (the same backbone options, input size and seed). A cell that trains is followed
by its evaluation once it finished (:attr:`GridCell.evaluates`). ``dssl grid --set`` overrides come last, over
every layer of the file. This module imports no torch.

Example:
    >>> spec = GridSpec.model_validate({"objectives": ["dino"], "evaluators": ["kmeans_seg"], "seeds": [0, 1]})
    >>> [cell.label for cell in spec.cells()]
    ['dino / vit_t16 / embedded', 'dino / vit_t16 / embedded']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from dssl.config import RunConfig, parse_set, read_yaml_config
from dssl.errors import ConfigError
from dssl.validation import describe_validation_error

#: Keys of ``base`` that the axes own; ``tracking`` is chosen per grid (``--tracking-uri``, ``--experiment``).
_AXIS_KEYS = {
    "objective": "objectives (with 'set:' per entry for objective options)",
    "seed": "seeds",
    "evaluators": "evaluators",
    "tracking": "the grid's 'experiment' key or dssl grid --tracking-uri/--experiment",
}
_AXIS_NAME_KEYS = {"backbone": "backbones", "dataset": "datasets"}
_MATCH_KEYS = ("objective", "backbone", "dataset", "seed")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_sets(assignments: list[str]) -> list[str]:
    for assignment in assignments:
        try:
            key = parse_set(assignment)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("--set ")) from None
        if "tracking" in key:
            raise ValueError(f"{assignment!r}: tracking is set per grid (experiment key, --tracking-uri)")
    return assignments


class AxisEntry(_Strict):
    """One value of an axis: a component name, the label it has in the grid, and its own overrides.

    Attributes:
        name: Registered component name (e.g. ``cotap``).
        label: Name of the column/row in the grid; default: ``name``. Labels are unique per axis.
        set: ``key.path=value`` overrides applied to the cells of this entry.
    """

    name: str = Field(min_length=1)
    label: str | None = Field(None, min_length=1)
    set: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("set")
    @classmethod
    def _valid_sets(cls, value: list[str]) -> list[str]:
        return _check_sets(value)

    @property
    def key(self) -> str:
        """The entry's label (its name when no label is given)."""
        return self.label or self.name


class CheckpointEntry(_Strict):
    """Weights evaluated without training (``dssl eval``), ranked beside the trained cells.

    Attributes:
        label: The row's name (the method column); unique among the objectives' and checkpoints' labels.
        init: What is evaluated: ``random``, ``timm``, a checkpoint file, ``runs:/RUN_ID`` or ``warmstart[:NAME]``.
        backbone: The backbone (label of the grid's ``backbones`` or any backbone name) the weights are for;
            default: every backbone of the grid.
        set: ``key.path=value`` overrides applied to the cells of this entry.
    """

    label: str = Field(min_length=1)
    init: str = Field(min_length=1)
    backbone: str | None = Field(None, min_length=1)
    set: list[str] = Field(default_factory=list)

    @field_validator("set")
    @classmethod
    def _valid_sets(cls, value: list[str]) -> list[str]:
        return _check_sets(value)


class ExtraEvaluation(_Strict):
    """Another evaluation dataset for every cell's weights (``also_evaluate_on``).

    Attributes:
        dataset: The evaluation dataset (name, label, and ``set`` overrides such as
            ``eval_dataset.options.root=...``).
        evaluators: Evaluators run on it.
    """

    dataset: AxisEntry
    evaluators: list[str] = Field(min_length=1)

    @field_validator("evaluators")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("evaluators must be unique")
        return value


class CellOverride(_Strict):
    """Overrides for the cells whose labels match.

    Attributes:
        match: Axis (``objective``, ``backbone``, ``dataset``, ``seed``) -> label(s); a cell matches when it
            matches every axis named.
        set: ``key.path=value`` overrides applied to the matching cells.
    """

    match: dict[str, str | int | list[str | int]] = Field(min_length=1)
    set: list[str] = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _known_axes(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(_MATCH_KEYS))
        if unknown:
            raise ValueError(f"unknown axis {unknown[0]!r} (accepted: {', '.join(_MATCH_KEYS)})")
        return value

    @field_validator("set")
    @classmethod
    def _valid_sets(cls, value: list[str]) -> list[str]:
        return _check_sets(value)

    def values(self, axis: str) -> list[str] | None:
        """The labels this override accepts on ``axis`` (as strings), or ``None`` when it does not filter it."""
        if axis not in self.match:
            return None
        value = self.match[axis]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def matches(self, cell: GridCell) -> bool:
        """Whether ``cell`` matches on every axis named in ``match``."""
        labels = {"objective": cell.objective.key, "backbone": cell.backbone.key, "dataset": cell.dataset.key}
        labels["seed"] = str(cell.seed)
        return all((accepted := self.values(axis)) is None or labels[axis] in accepted for axis in _MATCH_KEYS)


@dataclass(frozen=True)
class GridCell:
    """One run of the grid, before its configuration is resolved.

    Attributes:
        index: Position in the grid (0-based, objective-major, seed last).
        objective: The objective entry.
        backbone: The backbone entry.
        dataset: The training dataset entry.
        seed: The seed.
        base: The grid's base configuration mapping.
        evaluators: Evaluators the cell runs.
        sets: ``key.path=value`` overrides in order of precedence.
        checkpoint: The weights an evaluation-only cell evaluates; ``None`` for a cell that trains. Its
            ``objective`` then names the row (``name`` and ``label`` are the checkpoint's label).
        evaluates: For an ``also_evaluate_on`` cell of a cell that trains: the index of that cell, whose
            trained weights it evaluates (known once that cell finished).
        eval_on: For an ``also_evaluate_on`` cell: the evaluation dataset entry.
    """

    index: int
    objective: AxisEntry
    backbone: AxisEntry
    dataset: AxisEntry
    seed: int
    base: dict[str, Any]
    evaluators: tuple[str, ...]
    sets: tuple[str, ...]
    checkpoint: CheckpointEntry | None = None
    evaluates: int | None = None
    eval_on: AxisEntry | None = None

    @property
    def label(self) -> str:
        """``"<objective label> / <backbone label> / <dataset label>"``: the grid row (seeds share it); an
        ``also_evaluate_on`` cell adds `` @ <evaluation dataset label>``."""
        label = f"{self.objective.key} / {self.backbone.key} / {self.dataset.key}"
        return label + (f" @ {self.eval_on.key}" if self.eval_on is not None else "")

    @property
    def run_name(self) -> str:
        """The MLflow run name of the cell."""
        name = f"{self.objective.key}-{self.backbone.key}-{self.dataset.key}-s{self.seed}"
        return name + (f"-on-{self.eval_on.key}" if self.eval_on is not None else "")

    def overrides(self) -> dict[str, Any]:
        """Keyword overrides for :func:`dssl.api.resolve` (the CLI-flag layer); an ``also_evaluate_on`` cell of a
        cell that trains gets its ``init`` from the plan, once the trained cell's fingerprint is known."""
        axes: dict[str, Any] = {"backbone": self.backbone.name, "dataset": self.dataset.name}
        axes |= {"evaluators": list(self.evaluators), "seed": self.seed}
        if self.eval_on is not None:
            axes["eval_dataset.name"] = self.eval_on.name
        if self.checkpoint is not None and self.evaluates is None:
            return axes | {"init": self.checkpoint.init}
        # A trained cell's evaluation resolves as the cell did (its objective's preset sets the backbone).
        objective = {"objective": self.objective.name}
        return objective | axes if self.checkpoint is None else objective | axes | {"init": self.checkpoint.init}


class LauncherSpec(_Strict):
    """Where the cells run: this machine (``local``) or one job per cell through submitit (SLURM).

    Attributes:
        name: ``local`` (in this process, or ``--parallel N`` processes) or ``submitit``.
        cluster: submitit's executor: ``auto`` (SLURM when ``sbatch`` is available, else local processes),
            ``slurm``, ``local`` (one subprocess per job on this machine) or ``debug`` (in this process).
        partition: SLURM partition.
        gpus_per_node: GPUs per job.
        cpus_per_task: CPU cores per job.
        mem_gb: Memory per job in GB.
        timeout_min: Wall-time limit per job in minutes.
        slurm_additional_parameters: Any other ``sbatch`` option (``{"account": "abc", "qos": "high"}``).
    """

    name: Literal["local", "submitit"] = "local"
    cluster: Literal["auto", "slurm", "local", "debug"] = "auto"
    partition: str | None = None
    gpus_per_node: int | None = Field(None, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    timeout_min: int = Field(24 * 60, ge=1)
    slurm_additional_parameters: dict[str, Any] = Field(default_factory=dict)


class GridSpec(_Strict):
    """A grid file (see the module docstring).

    Attributes:
        name: Grid name (parent run name and ``dssl.grid`` tag); default: the file stem.
        description: Free text, shown nowhere but kept with the file.
        experiment: MLflow experiment of the parent and child runs; default ``dssl``.
        base: Run configuration keys shared by every cell.
        set: ``--set``-style overrides shared by every cell.
        objectives: Objective names or entries (``{name, label, set}``); may be empty when ``checkpoints`` is not.
        backbones: Backbone names or entries.
        datasets: Training dataset names or entries.
        evaluators: Evaluators every cell runs.
        seeds: Seeds; each (objective, backbone, dataset) row is run once per seed.
        overrides: Per-cell overrides.
        launcher: Where the cells run (``dssl grid --launcher`` and its flags override it).
        checkpoints: Weights evaluated without training, each a row beside the objectives.
        also_evaluate_on: More evaluation datasets, each with its evaluators: one evaluation-only cell per
            cell and entry (see the module docstring).
    """

    name: str | None = Field(None, min_length=1, pattern=r"^[\w.+-]+$")
    description: str | None = None
    experiment: str | None = Field(None, min_length=1)
    base: dict[str, Any] = Field(default_factory=dict)
    set: list[str] = Field(default_factory=list)
    objectives: list[AxisEntry] = Field(default_factory=list)
    backbones: list[AxisEntry] = Field(default_factory=lambda: [AxisEntry(name="vit_cpu8")], min_length=1)
    datasets: list[AxisEntry] = Field(default_factory=lambda: [AxisEntry(name="embedded")], min_length=1)
    evaluators: list[str] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    overrides: list[CellOverride] = Field(default_factory=list)
    launcher: LauncherSpec = Field(default_factory=LauncherSpec)
    checkpoints: list[CheckpointEntry] = Field(default_factory=list)
    also_evaluate_on: list[ExtraEvaluation] = Field(default_factory=list)
    #: ``dssl grid --set`` overrides: not part of the file, applied last to every cell (:meth:`with_sets`).
    _cli_sets: tuple[str, ...] = PrivateAttr(default=())

    def experiment_name(self, override: str | None = None) -> str:
        """The MLflow experiment of the grid's runs: ``override`` (``--experiment``), the file's, else ``dssl``."""
        return override or self.experiment or "dssl"

    def with_sets(self, sets: list[str] | tuple[str, ...]) -> GridSpec:
        """A copy whose cells also get ``sets`` (``dssl grid --set``), after every override of the file.

        Raises:
            ConfigError: An assignment is not ``key.path=value`` or sets ``tracking``.
        """
        try:
            checked = _check_sets(list(sets))
        except ValueError as exc:
            raise ConfigError(f"--set {exc}") from None
        copy = self.model_copy()
        copy._cli_sets = (*self._cli_sets, *checked)
        return copy

    @field_validator("set")
    @classmethod
    def _valid_sets(cls, value: list[str]) -> list[str]:
        return _check_sets(value)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(seed < 0 for seed in value):
            raise ValueError("seeds must be >= 0")
        if len(set(value)) != len(value):
            raise ValueError("seeds must be unique")
        return value

    @field_validator("evaluators")
    @classmethod
    def _evaluators(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("evaluators must be unique")
        return value

    @field_validator("base")
    @classmethod
    def _base(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, owner in _AXIS_KEYS.items():
            if key in value:
                raise ValueError(f"'{key}' is not allowed in base: it is set by {owner}")
        for key, owner in _AXIS_NAME_KEYS.items():
            if isinstance(value.get(key), dict) and "name" in value[key]:
                raise ValueError(f"'{key}.name' is not allowed in base: it is set by {owner}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GridSpec:
        if not self.objectives and not self.checkpoints:
            raise ValueError("objectives: give at least one objective (or checkpoints to evaluate)")
        axes: dict[str, list[Any]] = {"objective": self.objectives, "backbone": self.backbones}
        axes["dataset"] = self.datasets
        for axis, entries in axes.items():
            labels = [entry.key for entry in entries]
            if axis == "objective":
                labels += [entry.label for entry in self.checkpoints]
            duplicate = next((label for label in labels if labels.count(label) > 1), None)
            if duplicate is not None:
                raise ValueError(f"{axis} label {duplicate!r} appears twice; give entries distinct 'label's")
        extra = [entry.dataset.key for entry in self.also_evaluate_on]
        duplicate = next((label for label in extra if extra.count(label) > 1), None)
        if duplicate is not None:
            raise ValueError(f"also_evaluate_on: dataset label {duplicate!r} appears twice; give distinct 'label's")
        known = {axis: {entry.key for entry in entries} for axis, entries in axes.items()}
        known["objective"] |= {entry.label for entry in self.checkpoints}
        known["seed"] = {str(seed) for seed in self.seeds}
        for i, override in enumerate(self.overrides):
            for axis in _MATCH_KEYS:
                for value in override.values(axis) or []:
                    if value not in known[axis]:
                        raise ValueError(
                            f"overrides[{i}].match.{axis}: {value!r} is not in the grid "
                            f"(labels: {', '.join(sorted(known[axis]))})"
                        )
        # The shared part must be a valid run configuration on its own (names and options are checked
        # per cell, once the plugins are loaded).
        try:
            RunConfig.model_validate({**self.base, "evaluators": self.evaluators})
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc, prefix="base", model=RunConfig)) from None
        return self

    def cells(self) -> list[GridCell]:
        """Expand the grid: one cell per (objective, backbone, dataset, seed), in that nesting order, then one
        evaluation-only cell per cell and ``also_evaluate_on`` entry (entry-major)."""
        cells = list(self._iter_cells())
        index = len(cells)
        for entry in self.also_evaluate_on:
            for cell in cells[: self._n_main]:
                trained = cell.checkpoint is None
                checkpoint = cell.checkpoint or CheckpointEntry(label=cell.objective.key, init="random")
                cells.append(
                    replace(
                        cell,
                        index=index,
                        evaluators=tuple(entry.evaluators),
                        sets=(*cell.sets[: len(cell.sets) - len(self._cli_sets)], *entry.dataset.set, *self._cli_sets),
                        checkpoint=checkpoint,
                        evaluates=cell.index if trained else None,
                        eval_on=entry.dataset,
                    )
                )
                index += 1
        return cells

    @property
    def _n_main(self) -> int:
        """Cells before the ``also_evaluate_on`` ones."""
        rows = len(self.objectives) * len(self.backbones) + sum(len(self._backbones_of(e)) for e in self.checkpoints)
        return rows * len(self.datasets) * len(self.seeds)

    def _iter_cells(self) -> Iterator[GridCell]:
        trained = [(objective, backbone, None) for objective in self.objectives for backbone in self.backbones]
        evaluated = [
            (AxisEntry(name=entry.label, set=entry.set), backbone, entry)
            for entry in self.checkpoints
            for backbone in self._backbones_of(entry)
        ]
        rows = [*trained, *evaluated]
        product = ((*row, dataset, seed) for row in rows for dataset in self.datasets for seed in self.seeds)
        for index, (objective, backbone, checkpoint, dataset, seed) in enumerate(product):
            cell = GridCell(
                index=index,
                objective=objective,
                backbone=backbone,
                dataset=dataset,
                seed=seed,
                base=self.base,
                evaluators=tuple(self.evaluators),
                sets=(),
                checkpoint=checkpoint,
            )
            sets = [*self.set, *objective.set, *backbone.set, *dataset.set]
            for override in self.overrides:
                if override.matches(cell):
                    sets.extend(override.set)
            yield replace(cell, sets=(*sets, *self._cli_sets))

    def _backbones_of(self, entry: CheckpointEntry) -> list[AxisEntry]:
        """The backbones a checkpoint is evaluated on: its own (a grid label or a name), else the grid's."""
        if entry.backbone is None:
            return list(self.backbones)
        return [next((b for b in self.backbones if b.key == entry.backbone), AxisEntry(name=entry.backbone))]

    @property
    def n_cells(self) -> int:
        """Number of cells (runs) in the grid, ``also_evaluate_on`` ones included."""
        return self._n_main * (1 + len(self.also_evaluate_on))


def load_grid(path: str | Path, *, sets: list[str] | tuple[str, ...] = ()) -> GridSpec:
    """Read and validate a grid file.

    Args:
        path: The YAML grid file.
        sets: ``dssl grid --set`` overrides, applied to every cell after the file's own.

    Returns:
        The validated grid; its ``name`` defaults to the file stem.

    Raises:
        ConfigError: The file is missing, not YAML, or not a valid grid; one line naming the file and key.
    """
    path = Path(path)
    data = read_yaml_config(path)
    try:
        spec = GridSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"grid file {path}: {_describe(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"grid file {path}: {exc}") from None
    if spec.name is None:
        spec = spec.model_copy(update={"name": path.stem})
    return spec.with_sets(sets) if sets else spec


def _describe(exc: ValidationError) -> str:
    """One line for the first problems: ``key: message``, with pydantic's wording trimmed."""
    parts = []
    for error in exc.errors()[:3]:
        loc = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).replace("Value error, ", "")
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        elif loc:
            parts.append(f"{loc}: {message}")
        else:
            parts.append(message)
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f"; ... and {more} more" if more > 0 else "")
