"""Result objects: metrics with their direction and protocol, per-evaluator results, run results.

These are plain pydantic models (no torch) serialised to ``results.json`` with a schema version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS_SCHEMA_VERSION = 1
Direction = Literal["higher", "lower"]


class MetricValue(BaseModel):
    """One number with everything needed to compare it honestly.

    Attributes:
        value: The number (e.g. mIoU in percent).
        direction: Whether higher or lower is better.
        std: Standard deviation over repeats inside the evaluator (e.g. k-means seeds), if any.
        n: Number of repeats behind ``value``/``std``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    direction: Direction = "higher"
    std: float | None = None
    n: int = 1


class EvaluationResult(BaseModel):
    """What one evaluator returns.

    Attributes:
        evaluator: Registered evaluator name.
        protocol: Protocol id (e.g. ``"linear_seg"``); numbers of different protocols never compare.
        protocol_version: Bumped whenever a change can move the numbers.
        metrics: Metric name -> value with direction.
        settings: Every resolved setting that changes the numbers (input size, mask resolution, ...).
        dataset: Dataset the numbers were measured on.
    """

    model_config = ConfigDict(extra="forbid")

    evaluator: str
    protocol: str
    protocol_version: int
    dataset: str
    metrics: dict[str, MetricValue]
    settings: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None

    @property
    def protocol_id(self) -> str:
        """``protocol@version``, the key under which numbers may be ranked together."""
        return f"{self.protocol}@{self.protocol_version}"

    def flat_metrics(self) -> dict[str, float]:
        """``{"<evaluator>/<metric>": value}`` for trackers."""
        return {f"{self.evaluator}/{name}": m.value for name, m in self.metrics.items()}


class RunInfo(BaseModel):
    """Identity of a run, passed to lifecycle hooks."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = None
    run_name: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = None
    output_dir: str | None = None


class RunResults(BaseModel):
    """Everything a finished run reports; serialised as ``results.json``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = RESULTS_SCHEMA_VERSION
    run: RunInfo = Field(default_factory=RunInfo)
    status: Literal["FINISHED", "FAILED", "KILLED", "DRY_RUN"] = "FINISHED"
    config: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, float] = Field(default_factory=dict)
    evaluations: list[EvaluationResult] = Field(default_factory=list)
    init: str | None = Field(None, description="Where the trained weights started from (the init report).")
    baselines: dict[str, list[EvaluationResult]] = Field(
        default_factory=dict,
        description="Evaluations of reference backbones with the run's evaluators: 'start' (the weights "
        "training started from) and/or 'random' (the architecture at random init).",
    )
    versions: dict[str, str] = Field(default_factory=dict)
    seconds: float | None = None
    checkpoint: str | None = None
    label: str | None = Field(
        None,
        description="Set for an evaluation-only run (dssl eval): the name of the weights evaluated as they are; "
        "nothing was trained (train is empty).",
    )

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> RunResults:
        data = json.loads(Path(path).read_text())
        version = data.get("schema_version")
        if version != RESULTS_SCHEMA_VERSION:
            raise ValueError(
                f"{path}: results schema version {version} is not supported "
                f"(this dssl reads version {RESULTS_SCHEMA_VERSION})"
            )
        return cls.model_validate(data)
