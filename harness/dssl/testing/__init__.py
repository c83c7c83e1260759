"""The conformance suite: checks any registered component against its contract.

First-party components and third-party plugins run the very same checks. In a plugin's own tests (what
``dssl new-plugin`` writes)::

    import pytest
    from dssl.testing import check_component, check_plugin

    DISTRIBUTION = "dssl-my-method"
    COMPONENTS = {"objective": ["my_method"]}

    def test_plugin_loads_and_registers_its_components():
        check_plugin(DISTRIBUTION, COMPONENTS)

    @pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in COMPONENTS.items() for n in names])
    def test_conformance(kind, name):
        check_component(check_plugin(DISTRIBUTION, COMPONENTS)[kind, name])

Listing the expected components in the test (rather than asking the registry what the plugin registered) is
what makes a plugin that fails to load, registers nothing or collides with another fail its tests instead of
passing them with nothing checked.

Checks import torch when they run, never when this module is imported.
"""

from __future__ import annotations

from dssl.testing.conformance import (
    ConformanceError,
    check_augmentation,
    check_backbone,
    check_component,
    check_dataset,
    check_evaluator,
    check_objective,
    check_plugin,
    component_cases,
)
from dssl.testing.learning import QUICK_PROBE, LearningReport, learning_run

__all__ = [
    "QUICK_PROBE",
    "ConformanceError",
    "LearningReport",
    "check_augmentation",
    "check_backbone",
    "check_component",
    "check_dataset",
    "check_evaluator",
    "check_objective",
    "check_plugin",
    "component_cases",
    "learning_run",
]
