"""dssl: a benchmark harness for dense self-supervised learning in vision.

The import of this package stays light (no torch, timm, mlflow or sklearn) so that ``dssl --help``
and ``dssl plugins`` start fast; heavy modules are imported when a run needs them.

The public API: this package (``bench``, ``evaluate``, ``list_components``, ``hookimpl``), :mod:`dssl.api` (the
Python API), the ``__all__`` of :mod:`dssl.runner`, :mod:`dssl.plugin` (what plugins import) and
:mod:`dssl.testing` (the conformance suite). Every other module is private to the core.

Example:
    >>> import dssl
    >>> names = dssl.list_components("objective")  # doctest: +SKIP
    >>> result = dssl.bench(objective="dino", backbone="vit_t16")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Version ``MAJOR.MINOR`` of the plugin API (:mod:`dssl.plugin`, the hook specifications, registry entries and
#: component contracts). A minor version only adds; a major version may break. A plugin declares the range it
#: supports with a module attribute, e.g. ``dssl_plugin_api = ">=1.1,<2"`` (optional).
#: 1.1: the public surface :mod:`dssl.plugin`, the evaluator base classes, documented registry metadata.
PLUGIN_API_VERSION = "1.1"

PROJECT_NAME = "dssl"
ENTRY_POINT_GROUP = "dssl"

if TYPE_CHECKING:
    import pluggy

    from dssl.registry import ComponentEntry
    from dssl.results import RunResults

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    # ``hookimpl`` is built on first use: ``dssl --help`` then never imports pluggy (about 12 ms).
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT_NAME)
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'dssl' has no attribute {name!r}")


def bench(config: Any = None, /, **overrides: Any) -> RunResults:
    """Run one benchmark (train, evaluate, log) and return its results; mirrors ``dssl bench``.

    Args:
        config: A ``RunConfig``, a mapping, or a path to a YAML file; ``None`` uses the defaults.
        **overrides: Dotted keys (``objective="dino"``, ``optim__lr=1e-3`` or ``sets=["optim.lr=1e-3"]``)
            applied with CLI precedence.
    """
    from dssl.api import bench as _bench

    return _bench(config, **overrides)


def evaluate(config: Any = None, /, *, label: str | None = None, **overrides: Any) -> RunResults:
    """Evaluate weights without training them and log the run; mirrors ``dssl eval``.

    Args:
        config: A ``RunConfig``, a mapping, or a path to a YAML file; ``None`` uses the defaults.
        label: The weights' name on the leaderboard; default: from ``init`` (e.g. ``"random init"``).
        **overrides: As for :func:`bench`; ``init="runs:/RUN_ID"`` (or a file, ``timm``, ``random``) names the
            weights.
    """
    from dssl.api import evaluate as _evaluate

    return _evaluate(config, label=label, **overrides)


def list_components(kind: str | None = None) -> list[ComponentEntry]:
    """Registered components (optionally of one kind), discovered from installed plugins."""
    from dssl.api import list_components as _list

    return _list(kind)


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "PROJECT_NAME",
    "__version__",
    "bench",
    "evaluate",
    "hookimpl",
    "list_components",
]
