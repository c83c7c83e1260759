"""Credentials for a team MLflow server travel the MLflow way, never in a URI, a flag or a logged value.

MLflow's client reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (or
``~/.mlflow/credentials``) for HTTP basic authentication. A tracking URI is logged with every run
(``config.yaml``, ``run.json``, ``results.json``), so one that carries ``user:password@`` is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from dssl.errors import ConfigError

#: What to do instead of putting credentials in a URI.
CREDENTIALS_HINT = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials)"


def check_uri_has_no_credentials(uri: str, *, key: str = "tracking URI") -> None:
    """Refuse a URI with a ``user[:password]@`` part.

    Raises:
        ConfigError: Naming ``key`` and the host, never the credentials themselves.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return  # not a URL; MLflow names the problem when it is used
    if parts.scheme in ("http", "https") and (parts.username is not None or parts.password is not None):
        host = parts.hostname or "?"
        raise ConfigError(
            f"{key}: credentials in the URI ({parts.scheme}://…@{host}) would be logged with every run; "
            f"drop them from the URI and {CREDENTIALS_HINT}"
        )
