"""dssl's conformance suite on this plugin.

``COMPONENTS`` and ``HOOKS`` say what ``plugin.py`` registers: the tests fail when the plugin does not load (an
ImportError, a hook that does not match its specification, an API range that excludes this dssl), registers
nothing or something else, or registers a name another installed plugin registers too. Keep them in step with
``plugin.py``; add your own property tests below.
"""

import pytest
from dssl.testing import check_component, check_plugin

DISTRIBUTION = "dssl-guide"
COMPONENTS: dict[str, list[str]] = {
    "objective": ["guide"],
    "augmentation": ["guide"],
    "evaluator": ["guide"],
    "dataset": ["guide"],
    "backbone": ["guide"],
}
HOOKS: list[str] = ["dssl_run_finished"]


def test_plugin_loads_and_registers_exactly_its_components():
    check_plugin(DISTRIBUTION, COMPONENTS, hooks=HOOKS)


@pytest.mark.parametrize(("kind", "name"), [(kind, name) for kind, names in COMPONENTS.items() for name in names])
def test_conformance(kind, name):
    check_component(check_plugin(DISTRIBUTION, COMPONENTS, hooks=HOOKS)[kind, name])
