"""CLI commands on a PostgreSQL state database: backup with pg_dump (or the command to run), status."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import select

from erpsync_tui.cli import cli
from erpsync_tui.store import open_database
from erpsync_tui.store.control import submit_action
from erpsync_tui.store.models import OperatorAction

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parent.parent
SECRETS = {"ERPSYNC_CLOUD_API_KEY": "k1", "ERPSYNC_CLOUD_API_SECRET": "s1", "ERPSYNC_LOCAL_API_KEY": "k2",
           "ERPSYNC_LOCAL_API_SECRET": "s2", "ERPSYNC_WEBHOOK_SECRET": "webhook-secret-0123456789"}


def _run(url: str, *args: str):
    return CliRunner().invoke(cli, ["--config", str(REPO / "config.yaml"), "--db", url, *args])


@pytest.fixture
def url(pg_cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    url = pg_cluster.new_database()
    db = open_database(url)
    submit_action(db, "pause", actor="ops", host="box")
    db.dispose()
    return url


def test_backup_runs_pg_dump_and_the_dump_restores(url: str, pg_cluster, tmp_path: Path) -> None:
    dump = tmp_path / "state.dump"
    result = _run(url, "backup", str(dump))
    assert result.exit_code == 0, result.output
    assert "pg_dump" in result.output and dump.stat().st_size > 0
    assert _run(url, "backup", str(dump)).exit_code == 3  # never over an existing file
    target = pg_cluster.new_database()
    name = target.rsplit("/", 1)[1]
    restored = subprocess.run(["pg_restore", "--no-owner", "-h", "127.0.0.1", "-p", str(pg_cluster.port), "-U",
                               "erpsync", "-d", name, str(dump)], capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    db = open_database(target)
    try:
        assert db.schema_version() == 1
        with db.read() as s:
            assert [row.action for row in s.exec(select(OperatorAction)).all()] == ["pause"]
    finally:
        db.dispose()


def test_backup_without_pg_dump_names_the_command(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    result = _run(url, "backup", str(tmp_path / "x.dump"))
    assert result.exit_code == 3
    assert "pg_dump --format=custom" in result.output and "apt-get install postgresql-client" in result.output
    assert not (tmp_path / "x.dump").exists()


def test_status_on_postgres(url: str) -> None:
    result = _run(url, "status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["engine"]["mode"] == "stopped"
