"""Every registered component passes the conformance suite generated from the registry."""

from __future__ import annotations

import pytest
from dssl.testing import ConformanceError, check_component, check_objective, component_cases

CASES = component_cases()


def test_every_kind_has_cases():
    assert {e.kind for e in CASES} == {"backbone", "objective", "augmentation", "evaluator", "dataset"}


@pytest.mark.parametrize("entry", CASES, ids=lambda e: f"{e.distribution}:{e.key}")
def test_conformance(entry):
    if "requires_module" in entry.metadata:  # a component built on an optional extra (e.g. faiss)
        pytest.importorskip(entry.metadata["requires_module"])
    check_component(entry)


def test_a_broken_objective_is_caught(monkeypatch):
    import torch
    from dssl.objectives.dino import DINOObjective

    dino = next(e for e in CASES if e.key == "objective:dino")

    # A loss that never reaches the backbone must be rejected.
    def detached_loss(self, batch, *, step):
        return {"loss": torch.ones((), requires_grad=True)}

    monkeypatch.setattr(DINOObjective, "forward", detached_loss)
    with pytest.raises(ConformanceError, match="gradients reach the backbone"):
        check_objective(dino)
