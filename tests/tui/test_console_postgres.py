"""The console attached to a PostgreSQL state database: it names the lease holder, and the new one after a
take-over within one refresh."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from erpsync_tui.config import AppConfig
from erpsync_tui.store import open_database
from erpsync_tui.store.control import acquire_lease
from erpsync_tui.store.models import EngineLease, utcnow
from erpsync_tui.tui.app import ConsoleApp

from .testing import screen_text, wait_for

pytestmark = pytest.mark.postgres

REFRESH = 1.0  # console.refresh_seconds, its default


def _as_host(db, host: str, pid: int, **values) -> None:
    """Rewrite the lease row's host and pid, as the engine on another machine would have written them."""
    table = EngineLease.__table__
    with db.write_connection() as conn:
        conn.execute(update(table).values(hostname=host, pid=pid, **values))


async def test_attached_console_names_the_new_holder_within_one_refresh(pg_cluster) -> None:
    db = open_database(pg_cluster.new_database())
    config = AppConfig.model_validate({"sites": {"cloud": {"url": "http://127.0.0.1:9"},
                                                 "local": {"url": "http://127.0.0.1:10"}},
                                       "console": {"refresh_seconds": REFRESH}})
    acquire_lease(db, "engine-a", ttl=60)
    _as_host(db, "sync-a", 1111)
    app = ConsoleApp(db, config, mode="attached", readonly=True, actor="ops", host="test-host")
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: "attached to serve on sync-a pid 1111" in screen_text(app))
            _as_host(db, "sync-a", 1111, expires_at=utcnow() - timedelta(seconds=1))  # host a died
            await asyncio.to_thread(acquire_lease, db, "engine-b", 60)
            _as_host(db, "sync-b", 2222)
            taken = time.monotonic()
            await wait_for(pilot, lambda: "attached to serve on sync-b pid 2222" in screen_text(app), limit=10)
            shown_after = time.monotonic() - taken
    finally:
        db.dispose()
    print(f"console named the new holder {shown_after:.2f} s after the take-over (refresh {REFRESH} s)")
    assert shown_after <= REFRESH + 0.75  # the next refresh after the change (slack: its query and render)
