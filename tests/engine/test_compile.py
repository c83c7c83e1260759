"""``compile: true`` on the CPU: every first-party objective trains compiled, like eager, without graph breaks or
a recompile per step, and leaves its modules eager afterwards.

Two backends: ``aot_eager`` traces exactly what inductor gets (dynamo + AOT autograd: graph breaks, recompiles,
autograd of the traced graphs) in a few seconds per method, so every method is checked in the default run;
``inductor`` (what ``compile: true`` uses; C++ code generation with gcc, about a minute per method on 2 cores)
runs for DINO by default and for the other methods under ``-m slow``.
"""

from __future__ import annotations

import math

import pytest
import torch
from dssl.engine.compilation import compile_targets, compiled

from tests.engine.compiled_training import METHODS, train_two_steps

SLOW_INDUCTOR = [pytest.param(m, marks=pytest.mark.slow) for m in METHODS if m != "dino"]


def _check_compiled_like_eager(method: str, backend: str, rel: float) -> None:
    eager = train_two_steps(method)
    fast = train_two_steps(method, compile=True, backend=backend)
    assert all(math.isfinite(x) for x in fast.losses), fast.losses
    assert fast.losses == pytest.approx(eager.losses, rel=rel)
    assert fast.unique_graphs > 0, "nothing was compiled"
    assert fast.graph_breaks == 0
    # Every graph is compiled at the first step (global, local and masked views meet there); step 2 reuses them.
    assert fast.frames_after_step[1] == fast.frames_after_step[0]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_objective_traces_whole_without_recompiling(method: str) -> None:
    _check_compiled_like_eager(method, "aot_eager", rel=1e-6)


@pytest.mark.parametrize("method", ["dino", *SLOW_INDUCTOR])
def test_inductor_training_matches_eager(method: str) -> None:
    import torch._inductor.config

    # Stochastic depth draws random numbers; inductor's own generator would draw different ones.
    with torch._inductor.config.patch(fallback_random=True):
        _check_compiled_like_eager(method, "inductor", rel=1e-4)


@pytest.mark.parametrize("method", ["dino", "udi"])
def test_a_new_teacher_temperature_every_step_does_not_recompile(method: str) -> None:
    # Warm-up over the 2 steps: the temperature differs at each; it reaches the compiled loss as a tensor.
    options = {"warmup_teacher_temp_steps": 2, "teacher_temp": 0.07}
    run = train_two_steps(method, compile=True, backend="aot_eager", options=options)
    temperatures = [m["teacher_temp"] for m in run.metrics]
    assert temperatures[0] != temperatures[1]
    assert run.frames_after_step[1] == run.frames_after_step[0]
    assert run.graph_breaks == 0


def test_compilation_is_undone_and_leaves_the_state_dict_alone() -> None:
    from dssl.host import get_host

    from tests.engine.compiled_training import _build_objective

    objective = _build_objective(get_host().get("objective", "dino"))
    keys = list(objective.state_dict())
    targets = compile_targets(objective)
    # Student and teacher block stacks, and the loss.
    assert targets == [objective.backbone.vit.blocks, objective.teacher["backbone"].vit.blocks, objective.loss_fn]
    with compiled(objective, backend="eager") as modules:
        assert all(m._compiled_call_impl is not None for m in modules)
        assert list(objective.state_dict()) == keys
    assert all(m._compiled_call_impl is None for m in targets)
    assert isinstance(next(objective.parameters()), torch.nn.Parameter)


def test_an_objective_without_compilable_parts_warns_and_runs_eager(caplog: pytest.LogCaptureFixture) -> None:
    from dssl.objectives.base import Objective

    class Plain(Objective):
        def forward(self, batch, *, step):
            return {"loss": self.backbone(batch).pow(2).mean()}

    objective = Plain(torch.nn.Linear(2, 2), None, total_steps=1)
    with compiled(objective, backend="eager") as modules:
        assert modules == []
    assert "found nothing to compile" in caplog.text
