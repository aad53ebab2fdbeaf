"""The same action sent from the console (a key) and from the CLI gives the same operator_action row and
outcome: one typed path (store/actions.py), carried out by the engine that holds the lease."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlmodel import select

from erpsync_tui.cli import cli
from erpsync_tui.connectors.base import ValidationFailed
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import queue
from erpsync_tui.store.models import OperatorAction, QueueItem

from .test_engine_flows import console, customer, dead_item_on_the_queue_screen, engine_config, start_engine
from .testing import wait_for


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1, webhook_retry_delays=(0.05,)) as sim:
        yield sim


async def test_console_and_cli_retry_give_the_same_row_and_outcome(cluster, db, tmp_path) -> None:
    config = engine_config(cluster)
    docs = [cluster["cloud"].insert("Customer", customer(f"Twin {i}"), fire_webhooks=False) for i in range(2)]
    thread = await asyncio.to_thread(start_engine, cluster, db, config)
    local = thread.service.connectors["local"]
    real_insert = local.insert

    async def rejecting_insert(doctype, body):  # a site rule rejects them until "fixed"
        raise ValidationFailed("HTTP 417 ValidationError: rejected", site="local", status=417)

    local.insert = rejecting_insert
    try:
        with db.write() as s:
            ids = [queue.enqueue(s, site="cloud", doctype="Customer", name=d["name"], max_attempts=2).id for d in docs]

        def both_dead() -> bool:
            with db.read() as s:
                return all(s.get(QueueItem, i).status == "dead" for i in ids)

        app = await console(db, config, thread)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, both_dead, limit=15)
            local.insert = real_insert
            await pilot.press("q")
            await wait_for(pilot, lambda: str(ids[0]) in app.screen.items)
            table = app.screen.query_one("#queue-table")
            table.move_cursor(row=table.get_row_index(str(ids[0])))
            await pilot.press("r")  # the console's retry of item 0

            def finished(count: int) -> bool:
                with db.read() as s:
                    rows = s.exec(select(OperatorAction)).all()
                return len(rows) == count and all(r.status == "done" for r in rows)

            await wait_for(pilot, lambda: finished(1), limit=15)

            def notified(text: str) -> bool:
                return any(text in n.message for n in app._notifications)

            await wait_for(pilot, lambda: notified("retry: retried 1: 1 synced"), limit=10)  # the outcome lands
            config_file = tmp_path / "config.yaml"
            sites = "".join(f"  {n}: {{url: '{s.url}'}}\n" for n, s in cluster.sites.items())
            config_file.write_text(f"sites:\n{sites}")
            # The CLI's retry of item 1, sent while the console's in-process engine holds the lease.
            result = await asyncio.to_thread(CliRunner().invoke, cli, ["--config", str(config_file), "--db",
                                                                       str(db.path), "retry", str(ids[1]), "--json"])
            assert result.exit_code == 0, result.output
        with db.read() as s:
            console_row, cli_row = s.exec(select(OperatorAction).order_by(OperatorAction.id)).all()
    finally:
        await asyncio.to_thread(thread.stop)
    assert (console_row.action, console_row.params, console_row.target) == ("retry", {"ids": [ids[0]]},
                                                                             f"queue item {ids[0]}")
    assert (cli_row.action, cli_row.params, cli_row.target) == ("retry", {"ids": [ids[1]]}, f"queue item {ids[1]}")
    assert console_row.status == cli_row.status == "done"
    assert console_row.result == cli_row.result == "retried 1: 1 synced"
    assert console_row.processed_by == cli_row.processed_by == thread.service.owner
    assert cluster["local"].count("Customer") == 2


async def test_a_retry_that_fails_again_says_so_when_its_outcome_lands(cluster, db) -> None:
    """Issue 16: an action's outcome is shown for a failure too, not only "queued": the site still rejects."""
    # a site rule rejects it, and nobody has fixed the rule yet
    async with dead_item_on_the_queue_screen(cluster, db, "Still rejected", max_attempts=1,
                                             rejection="HTTP 417 ValidationError: rejected by a site rule") as item:
        app = item.app
        await item.pilot.press("r")

        def notified(text: str) -> bool:
            return any(text in n.message for n in app._notifications)

        await wait_for(item.pilot, lambda: notified("retried 1: 0 synced, 1 failed"), limit=15)
        assert any("rejected by a site rule" in n.message for n in app._notifications
                   if "retried 1" in n.message)
