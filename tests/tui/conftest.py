"""Console fixtures: a seeded SQLite state file, a config, and a factory for ConsoleApp under run_test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from erpsync_tui.config import AppConfig
from erpsync_tui.store import Database, open_database
from erpsync_tui.tui.app import ConsoleApp

from .fixture import FIXTURE_NOW, seed


def offline_config(**console: Any) -> AppConfig:
    sites = {"cloud": {"url": "http://127.0.0.1:9"}, "local": {"url": "http://127.0.0.1:10"}}
    return AppConfig.model_validate({"sites": sites, "console": {"refresh_seconds": 0.2, **console}})


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield database
    database.dispose()


@pytest.fixture
def fixture_db(db: Database) -> Database:
    seed(db)
    return db


AppFactory = Callable[..., ConsoleApp]


@pytest.fixture
def make_app(fixture_db: Database) -> AppFactory:
    def make(*, readonly: bool = False, mode: str = "attached", config: AppConfig | None = None,
             db: Database | None = None, prewarm: bool = False, **kw: Any) -> ConsoleApp:
        # Screens are not mounted ahead here (timing-free tests); tests of the prewarm ask for it.
        return ConsoleApp(db or fixture_db, config or offline_config(), mode=mode, readonly=readonly, actor="ops",
                          host="test-host", now=lambda: FIXTURE_NOW, prewarm=prewarm, **kw)

    return make
