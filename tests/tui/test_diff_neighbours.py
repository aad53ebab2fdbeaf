"""The child-row diff draws the differing rows and, around each differing stretch, its unchanged neighbours."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from erpsync_tui.store.models import Conflict
from erpsync_tui.tui.widgets.diff_view import DiffView

from .testing import screen_text, wait_for, wait_loaded

ROWS = 50


def rows(changes: dict[int, int]) -> list[dict[str, Any]]:
    """50 item rows (qty = position), some with another qty; `changes` by 1-based position."""
    return [{"item_code": f"IT-{i:02d}", "qty": changes.get(i, i), "rate": 1, "idx": i} for i in range(1, ROWS + 1)]


def replace_conflicts(db) -> int:
    """The fixture's conflicts replaced by one Sales Order: row 10 edited on cloud, rows 30 and 31 on local."""
    with db.write() as s:
        for old in s.exec(select(Conflict)).all():
            s.delete(old)
        base = {"customer": "Acme Trading", "items": rows({})}
        conflict = Conflict(record_id=9, doctype="Sales Order", names={"cloud": "SO-1", "local": "SO-2"},
                            versions={"cloud": {**base, "items": rows({10: 100})},
                                      "local": {**base, "customer": "Acme Ltd", "items": rows({30: 300, 31: 310})}},
                            modified={}, base={**base, "customer": "Acme Inc"}, fields=["customer"])
        s.add(conflict)
        s.flush()
        assert conflict.id is not None
        return conflict.id


async def test_each_differing_stretch_has_its_unchanged_neighbours_and_only_those(make_app, fixture_db) -> None:
    replace_conflicts(fixture_db)
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: bool(app.screen.diffs))
        diff = app.screen.query_one(DiffView)
        drawn = [(line.kind, diff.model.hunks["items"][line.hunk].cloud_position if line.hunk is not None else None)
                 for line in diff.lines.values() if line.field == "items"]
        # row 10 (cloud) and the stretch 30–31 (local), each between its unchanged neighbours; the rest counted
        assert drawn == [("field", None), ("context", 9), ("hunk", 10), ("context", 11),
                         ("context", 29), ("hunk", 30), ("hunk", 31), ("context", 32), ("note", None)]
        text = screen_text(app)
        assert "└ 43 same" in text  # 50 rows: 3 differ, 4 drawn as their neighbours, 43 only counted
        for position in (9, 11, 29, 32):
            line = next(ln for ln in text.splitlines() if f"└ row {position} " in ln)
            assert "· same" in line and f"qty={position}" in line  # labelled, with the values around the edit
        assert "row 20 " not in text
        # nothing to choose on a neighbour
        diff.move_cursor(row=list(diff.lines).index("x|items|8|9"))
        await pilot.press("c")
        await wait_for(pilot, lambda: any("nothing to choose" in n.message for n in app._notifications))
        assert diff.resolution.rows.get("items") is None
