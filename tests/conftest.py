"""Shared fixtures: every test runs with an in-memory keyring and its own config/data/log dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from pgcluster import PgCluster

from erpsync_tui import secrets

REPO = Path(__file__).resolve().parent.parent


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-process keyring for tests. It lives here, not in the package: keyring auto-selects any
    imported backend class, and a memory backend must never be chosen in production."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """The OS keyring cannot exist here: tests use an in-memory backend, never the real one."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    secrets._REDACTOR.clear()
    yield backend
    keyring.set_keyring(previous)
    secrets._REDACTOR.clear()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """User config/data/state dirs in a temp folder; no ERPSYNC_* variables leak in from the shell."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):
        monkeypatch.setenv(var, str(home / sub))
    for var in list(os.environ):
        if var.startswith("ERPSYNC_"):
            monkeypatch.delenv(var)
    return home


# ============================================================================== the two backends

BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `backends` (or in a module marked so) that use the database run once per backend.

    The PostgreSQL half carries the `postgres` marker: plain `pytest` leaves it out (no server needed),
    `pytest -m postgres` runs only it (`.ci/run` does both). `sqlite_only` opts one test out (a SQLite file
    property: PRAGMAs, the flock writer lock, a corrupt file).
    """
    if "backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("backends") and not metafunc.definition.get_closest_marker(
            "sqlite_only"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the whole run, started on first use, stopped at the end."""
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db_url(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> str:
    """The state database URL of this test: a SQLite file, or a fresh database on the test cluster."""
    if backend == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        return cluster.new_database()
    return f"sqlite:///{tmp_path / 'state.db'}"
