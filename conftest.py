"""Test-wide environment (no model hub, no MLflow telemetry, one torch thread) and local MLflow servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tests use tiny models, for which intra-op threads only add contention (10x slower on a busy
    2-core runner); results are the same either way."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class MlflowServer:
    """A local ``mlflow server`` on 127.0.0.1 for tests, that can be stopped (an outage) and started again.

    It keeps its port, SQLite store and artifact folder across restarts. With ``admin_password`` it runs
    MLflow's basic-auth app (``--app-name basic-auth``) whose only user is ``admin``.

    Args:
        folder: Holds the stores and ``server.log``.
        admin_password: Enables basic authentication with this admin password.
    """

    def __init__(self, folder: Path, *, admin_password: str | None = None) -> None:
        self.folder = folder
        self.admin_password = admin_password
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> MlflowServer:
        """Start the server and wait until ``/health`` answers (fails the test after ``timeout_s``)."""
        import urllib.request

        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", f"sqlite:///{self.folder}/server.db",
            "--artifacts-destination", str(self.folder / "server-artifacts"), "--workers", "1",
        ]  # fmt: skip
        env = dict(os.environ)
        if self.admin_password is not None:
            command += ["--app-name", "basic-auth"]
            ini = self.folder / "basic_auth.ini"
            # Credential checks are cached for a minute: an uncached PBKDF2 check costs seconds per request
            # on a busy 2-core runner.
            ini.write_text(
                "[mlflow]\ndefault_permission = EDIT\n"
                f"database_uri = sqlite:///{self.folder}/basic_auth.db\nadmin_username = admin\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                "auth_cache_ttl_seconds = 60\n"
            )
            env |= {
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "dssl-tests-csrf-key",
            }
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (the server process owns it)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mlflow server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the server (its whole process group) and wait until it is gone."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="module")
def mlflow_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., MlflowServer]]:
    """Factory of started :class:`MlflowServer` objects; every one is stopped at the end of the test module."""
    started: list[MlflowServer] = []

    def start(*, admin_password: str | None = None) -> MlflowServer:
        server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), admin_password=admin_password)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
