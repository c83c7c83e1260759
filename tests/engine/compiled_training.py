"""Two training steps of a registered objective through the engine, eager or compiled, for the compile tests.

Import it as ``from tests.engine.compiled_training import ...``. The objective has the entry's ``test_options``
on a 2-block ``vit_t16`` at 32 px, the batches are its augmentation's views of 2 random images (the conformance
suite's); the same seed gives the same objective and batches, so eager and compiled runs are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from dssl.config import OptimConfig
from dssl.engine.trainer import Trainer

#: (objective, option overrides) of the six first-party methods.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "dino": ("dino", {}),
    "cotap": ("cotap", {}),
    "cotap+oaf": ("cotap", {"filter": "oaf"}),
    "paka": ("paka", {}),
    "udi": ("udi", {}),
    "stellar": ("stellar", {}),
}
STEPS = 2


@dataclass
class TwoSteps:
    """What a short run logged: per-step metrics, and dynamo's compile counts after each step."""

    metrics: list[dict[str, float]] = field(default_factory=list)
    frames_after_step: list[int] = field(default_factory=list)
    graph_breaks: int = 0
    unique_graphs: int = 0
    output_dtypes: dict[str, torch.dtype] = field(default_factory=dict)
    #: Output dtypes of the first block's first MLP layer (a linear layer: bf16 under CPU autocast); eager runs.
    block_dtypes: set[torch.dtype] = field(default_factory=set)

    @property
    def losses(self) -> list[float]:
        return [m["loss"] for m in self.metrics]


def train_two_steps(
    method: str,
    *,
    compile: bool = False,
    backend: str = "inductor",
    precision: str = "fp32",
    options: dict[str, Any] | None = None,
) -> TwoSteps:
    """Train ``method`` (a key of :data:`METHODS`) for :data:`STEPS` steps on the CPU and report.

    Args:
        method: Which objective and options.
        compile: The run's ``compile`` setting.
        backend: ``torch.compile`` backend when compiling.
        precision: The run's ``precision`` (``bf16`` autocasts on the CPU).
        options: Objective options over the method's.
    """
    import torch._dynamo
    from dssl.host import get_host
    from dssl.testing.conformance import _view_batch
    from torch._dynamo.utils import counters

    name, overrides = METHODS[method]
    overrides = {**overrides, **(options or {})}
    entry = get_host().get("objective", name)
    if overrides:
        entry = _with_options(entry, overrides)
    objective = _build_objective(entry)
    batches = [_view_batch(entry, seed=10 + step) for step in range(STEPS)]
    torch._dynamo.reset()
    counters.clear()
    report = TwoSteps()

    def record(metrics: Any, step: int) -> None:
        report.metrics.append(dict(metrics))
        report.frames_after_step.append(int(counters["stats"]["unique_graphs"]))

    def outputs_hook(module: Any, args: Any, kwargs: Any, outputs: Any) -> None:
        report.output_dtypes.update({k: v.dtype for k, v in outputs.items() if isinstance(v, torch.Tensor)})

    def blocks_hook(module: Any, args: Any, output: Any) -> None:
        report.block_dtypes.add(output.dtype)

    objective.register_forward_hook(outputs_hook, with_kwargs=True)
    if not compile:  # a hook on a compiled module would be traced into its graph
        objective.backbone.vit.blocks[0].mlp.fc1.register_forward_hook(blocks_hook)
    optim = OptimConfig(steps=STEPS, batch_size=2, warmup_steps=1, num_workers=0)
    trainer = Trainer(
        objective,
        optim,
        device=torch.device("cpu"),
        precision=precision,
        log_every=1,
        on_metrics=record,
        compile=compile,
        compile_backend=backend,
    )
    trainer.fit(iter(batches))
    report.graph_breaks = sum(counters["graph_break"].values())
    report.unique_graphs = int(counters["stats"]["unique_graphs"])
    return report


def _with_options(entry: Any, overrides: dict[str, Any]) -> Any:
    """``entry`` whose ``test_options`` also set ``overrides``."""
    import dataclasses

    metadata = dict(entry.metadata)
    metadata["test_options"] = {**metadata.get("test_options", {}), **overrides}
    return dataclasses.replace(entry, metadata=metadata)


def _build_objective(entry: Any) -> Any:
    """The entry's objective on a 2-block ``vit_t16`` at 32 px (tracing cost grows with the depth)."""
    from dssl.backbones.vit import ViTBackbone
    from dssl.testing.conformance import options_for

    torch.manual_seed(0)
    cls = entry.load()
    options = options_for(entry)
    backbone = ViTBackbone("vit_t16", img_size=32, extra_tokens=cls.extra_tokens(options), timm_args={"depth": 2})
    return cls(backbone, options, total_steps=STEPS)
