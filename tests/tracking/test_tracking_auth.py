"""A team server that lets in only the team: MLflow's basic-auth app, credentials passed the MLflow way."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dssl.cli.main import cli

from tests.tiny_run import write_tiny_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _admin_client(url: str, password: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return MlflowClient(tracking_uri=url)


def _team_runs(client: Any) -> list[Any]:
    found = client.get_experiment_by_name("team")
    return list(client.search_runs([found.experiment_id])) if found else []


def test_basic_auth_server_logs_the_team_refuses_a_wrong_password_and_never_sees_a_credential(
    tmp_path: Path, mlflow_servers: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = f"dssl-{secrets.token_hex(12)}"
    server = mlflow_servers(admin_password=password)
    config = write_tiny_run(tmp_path, checkpoint_every=0, tracking={"uri": server.url, "experiment": "team"})
    monkeypatch.chdir(tmp_path)

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    refused = CliRunner().invoke(cli, ["bench", "--config", str(config)])
    assert refused.exit_code == 2, refused.output
    assert f"the MLflow server {server.url} rejected the credentials of user 'admin'" in refused.output
    assert "MLFLOW_TRACKING_PASSWORD" in refused.output and "train step" not in refused.output
    assert not (tmp_path / "runs").exists()  # refused before anything was built or trained
    client = _admin_client(server.url, password, monkeypatch)
    assert _team_runs(client) == []

    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    anonymous = CliRunner().invoke(cli, ["bench", "--config", str(config)])
    assert anonymous.exit_code == 2 and "rejected the credentials" in anonymous.output

    _admin_client(server.url, password, monkeypatch)
    logged = CliRunner().invoke(cli, ["bench", "--config", str(config)])
    assert logged.exit_code == 0, logged.output
    (run,) = _team_runs(client)
    assert run.info.status == "FINISHED" and "kmeans_seg/miou" in run.data.metrics

    secret = password.encode()
    assert not any(password in value for value in [*run.data.params.values(), *run.data.tags.values()])
    downloaded = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    artifact_files = [p for p in downloaded.rglob("*") if p.is_file()]
    assert {"config.yaml", "results.json", "backbone.pt"} <= {p.name for p in artifact_files}
    local_files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert not [p for p in artifact_files + local_files if secret in p.read_bytes()]
