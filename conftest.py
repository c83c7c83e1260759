"""Test-wide environment (no model hub, no MLflow telemetry, one torch thread, the test plugins) and local
MLflow servers."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before Python 3.11
    import tomli as tomllib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

#: The example third-party plugin and the deliberately broken one: the tests load them without installing them.
EXAMPLE_PLUGINS = Path(__file__).resolve().parent / "tests" / "example_plugins"
#: Set while the tests run: the folder of the test plugins' distribution metadata.
TEST_PLUGINS_ENV = "DSSL_TEST_PLUGINS_DIR"
_TEST_PLUGINS_KEY = pytest.StashKey[Path]()


def provide_test_plugins(packages: Path = EXAMPLE_PLUGINS) -> Path:
    """Make every plugin package under ``packages`` importable and discoverable, without installing it.

    Each package's ``src`` goes on ``sys.path``, and in front of them a fresh folder of ``<name>-<version>.dist-info``
    directories (``METADATA`` and ``entry_points.txt``, read from the package's ``pyproject.toml``):
    ``importlib.metadata`` finds distributions on ``sys.path``, so the plugin host discovers these exactly as it
    discovers installed ones. Subprocesses inherit the same through ``PYTHONPATH``. Nothing is written into the
    environment: the user's ``dssl plugins`` never sees them.

    Returns:
        The metadata folder (remove it when done).
    """
    root = Path(tempfile.mkdtemp(prefix="dssl-test-plugins-"))
    paths = [str(root)]
    for pyproject in sorted(packages.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        )
        entry_points = "".join(f"{name} = {target}\n" for name, target in project["entry-points"]["dssl"].items())
        (info / "entry_points.txt").write_text(f"[dssl]\n{entry_points}")
        paths.append(str(pyproject.parent / "src"))
    sys.path[:0] = paths
    inherited = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, inherited] if inherited else paths)
    os.environ[TEST_PLUGINS_ENV] = str(root)
    importlib.invalidate_caches()
    return root


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: plugin tests parametrised from the registry discover the test plugins too.
    config.stash[_TEST_PLUGINS_KEY] = provide_test_plugins()


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_TEST_PLUGINS_KEY, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


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
