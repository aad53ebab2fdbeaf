"""One queue filter (store/queries.QueueFilter): the console's queue page, `queue`, `retry` and `discard` share it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from erpsync_tui.store import Database, open_database
from erpsync_tui.store.models import QueueItem
from erpsync_tui.store.queries import QueueFilter, queue_item_ids
from erpsync_tui.tui import data

pytestmark = pytest.mark.backends  # LIKE escaping differs by dialect: both backends


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    with database.write() as s:
        for name, status, site, code in [
            ("CUST-0001", "failed", "cloud", "ERP002"), ("CUST-0010", "dead", "local", None),
            ("100%_off", "failed", "cloud", "ERP003"), ("100xyoff", "dead", "cloud", None),
            ("CUST-0002", "pending", "cloud", None),
        ]:
            s.add(QueueItem(site=site, doctype="Customer", name=name, status=status, error_code=code))
    yield database
    database.dispose()


def names(db: Database, flt: QueueFilter) -> list[str]:
    with db.read() as s:
        ids = queue_item_ids(s, flt)
        return [s.get(QueueItem, i).name for i in ids]  # type: ignore[union-attr]


def test_name_is_a_part_of_the_document_name_and_wildcards_are_literal(db: Database) -> None:
    assert names(db, QueueFilter(name="CUST-000")) == ["CUST-0001"]  # the pending one is not a problem state
    assert names(db, QueueFilter(name="%_")) == ["100%_off"]  # not LIKE wildcards: "100xyoff" stays out
    assert names(db, QueueFilter(name="CUST", site="local")) == ["CUST-0010"]


def test_name_round_trips_through_an_action_s_params() -> None:
    flt = QueueFilter(("dead",), doctype="Customer", name="CUST")
    assert QueueFilter.from_params(flt.as_params()) == flt
    assert "name:CUST" in flt.describe()


def test_the_console_queue_page_uses_the_same_filter(db: Database) -> None:
    for text in ("", "CUST", "status:all", "site:cloud status:failed,dead", "code:ERP003", "%_"):
        console = data.QueueFilter.parse(text, sites=("cloud", "local"))
        shown = sorted(item.name or "" for item in data.queue_page(db, console))
        store = QueueFilter(console.statuses, console.doctype, console.site, console.error_code, name=console.name)
        assert shown == sorted(names(db, store)), text
    assert [i.name for i in data.queue_page(db, data.QueueFilter.parse("%_"))] == ["100%_off"]
