"""Opening the state database costs the same whatever its size: no PRAGMA quick_check on open.

Integrity is checked by the engine's scheduled health job and by `doctor`, once each. The figure for a
1,000,000-record database against a 10,000-record one is in bench/bench_status.py (README, Benchmarks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from erpsync_tui.cli import cli
from erpsync_tui.store import open_database, sqlite


@pytest.fixture
def pragma_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_quick, real_full = sqlite.quick_check, sqlite.integrity_check

    def quick(engine):  # type: ignore[no-untyped-def]
        calls.append("quick_check")
        return real_quick(engine)

    def full(engine):  # type: ignore[no-untyped-def]
        calls.append("integrity_check")
        return real_full(engine)

    monkeypatch.setattr(sqlite, "quick_check", quick)
    monkeypatch.setattr(sqlite, "integrity_check", full)
    return calls


def test_open_runs_no_integrity_pragma(tmp_path: Path, pragma_calls: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_database(url).dispose()  # creates
    open_database(url).dispose()  # opens an existing one
    assert pragma_calls == []


def test_status_runs_no_integrity_pragma(tmp_path: Path, pragma_calls: list[str]) -> None:
    db = tmp_path / "state.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "status", "--json"])
    assert result.exit_code == 0, result.output
    assert pragma_calls == []


def test_doctor_checks_integrity_exactly_once(tmp_path: Path, pragma_calls: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sites:\n  cloud: {url: 'http://127.0.0.1:9'}\n  local: {url: 'http://127.0.0.1:9'}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(tmp_path / "s.db"), "doctor", "--json"])
    assert result.exit_code == 1, result.output  # nothing listens on port 9
    assert pragma_calls == ["quick_check"]
