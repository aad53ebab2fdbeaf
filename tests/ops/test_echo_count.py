"""The echo count (webhooks that were the echo of our own writes, logged at DEBUG only) as the dashboard reads
it: `queries.echo_count` over the engine status the dashboard loads, from the running engine's lease."""

from __future__ import annotations

from pathlib import Path

from erpsync_tui.store import control, open_database, queries


def test_echo_count_is_the_running_engines_and_none_without_one(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert queries.echo_count(control.engine_status(db)) is None  # no engine
        control.acquire_lease(db, "engine:a", 30)
        assert queries.echo_count(control.engine_status(db)) is None  # running, nothing reported yet
        assert control.renew_lease(db, "engine:a", 30, {"circuits": {}, "echoes_skipped": 7})
        assert queries.echo_count(control.engine_status(db)) == 7
        control.release_lease(db, "engine:a")
        assert queries.echo_count(control.engine_status(db)) is None  # a stopped engine's count is not current
    finally:
        db.dispose()
