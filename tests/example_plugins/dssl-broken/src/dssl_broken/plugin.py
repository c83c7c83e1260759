"""Fails at import on purpose, like a plugin whose dependency is missing.

Its components are registered below the failing import, as in any plugin; dssl reads their names from
this file without running it, so that asking for any of them names this plugin and its error.
"""

import dssl
import dssl_broken_missing_dependency  # noqa: F401  (does not exist)


@dssl.hookimpl
def dssl_register_objectives(registry):
    registry.add("broken_objective", "dssl_broken.plugin:Objective", summary="never registered: the import fails")


@dssl.hookimpl
def dssl_register_evaluators(registry):
    registry.add("broken_eval", "dssl_broken.plugin:Evaluator", summary="never registered: the import fails")


@dssl.hookimpl
def dssl_register_datasets(registry):
    registry.add("broken_data", "dssl_broken.plugin:build", summary="never registered: the import fails")
