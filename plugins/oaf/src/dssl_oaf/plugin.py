"""dssl plugin module of dssl-oaf: registers no component of its own.

OAF is a *filter* of the ``cotap`` objective, added through the ``dssl_cotap.filters`` entry point group
(see :mod:`dssl_cotap.filters`); this module only makes the distribution visible to dssl's plugin host.
Use it with ``dssl bench --objective cotap --set objective.options.filter=oaf``.
"""

from __future__ import annotations

dssl_plugin_api = ">=1.1,<2"
