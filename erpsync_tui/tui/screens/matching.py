"""Matching: the dry run of `erpsync-tui match` on screen — what a first full sync would pair, what is
ambiguous, what it would create, and duplicates already on the sites. Reads the sites; writes nothing."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.tui.safe import safe_text

COLUMNS = ("what", "doctype", "first site", "second site", "rule", "note")
MAX_ROWS = 2000  # a screenful of problems is the point; `erpsync-tui match --format csv` lists every pair


def report_rows(plans: list[Any], pair: tuple[str, str]) -> list[tuple[str, ...]]:
    """One row per thing to look at: a summary per doctype, ambiguous and duplicate documents, differing pairs."""
    rows: list[tuple[str, ...]] = []
    for plan in plans:
        counts = plan.as_dict()["counts"]
        creates = ", ".join(f"{len(n)} from {s}" for s, n in plan.to_create.items())
        rows.append(("summary", plan.doctype, "", "", "",
                     f"{counts['pairs']} to pair, {counts['expected_conflicts']} differ, {counts['ambiguous']} "
                     f"ambiguous, {counts['duplicates']} duplicates; to create: {creates}"))
        for a in plan.ambiguous:
            names = (a.name, ", ".join(a.candidates)) if a.site == pair[0] else (", ".join(a.candidates), a.name)
            rows.append(("AMBIGUOUS", plan.doctype, *names, "+".join(a.rule), "not paired, not created (ERP009)"))
        for a in plan.duplicates:
            names = (a.name, ", ".join(a.candidates)) if a.site == pair[0] else (", ".join(a.candidates), a.name)
            rows.append(("DUPLICATE", plan.doctype, *names, "+".join(a.rule), f"{len(a.candidates)} copies"))
        for p in plan.pairs:
            if p.differs:
                rows.append(("differs", plan.doctype, p.names[pair[0]], p.names[pair[1]], "+".join(p.rule),
                             "policy or conflict at first contact"))
    return rows[:MAX_ROWS]


class MatchingScreen(Screen[None]):
    SCREEN_NAME = "matching"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.back", "Back", id="back", show=False),
        Binding("r", "run", "Run again", id="matching_run"),
    ]

    def __init__(self) -> None:
        super().__init__(id="screen-matching")
        self.runs = 0  # finished dry runs (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Static(Text(" Matching — dry run of pairing (reads the sites, writes nothing) ", style="bold reverse"),
                     id="header")
        yield Static("running the dry run…", id="matching-summary")
        yield DataTable(id="matching-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#matching-table", DataTable)
        pair = self.app.config.pair  # type: ignore[attr-defined]
        for name in COLUMNS:
            table.add_column({"first site": pair[0], "second site": pair[1]}.get(name, name), key=name)
        table.focus()
        self.action_run()

    def action_run(self) -> None:
        self.query_one("#matching-summary", Static).update("running the dry run…")
        self._dry_run()

    @work(thread=True, exclusive=True, exit_on_error=False, group="matching")
    def _dry_run(self) -> None:
        app: Any = self.app
        try:
            plans, pair = asyncio.run(_plans(app.config, app.db))
        except Exception as exc:  # no credentials, a site down, a rule naming an unknown field
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._show, plans, pair)

    def _failed(self, message: str) -> None:
        from erpsync_tui.secrets import redact

        self.query_one("#matching-summary", Static).update(safe_text(f"dry run failed: {redact(message)}",
                                                                     "bold", single_line=False))
        self.runs += 1

    def _show(self, plans: list[Any], pair: tuple[str, str]) -> None:
        table = self.query_one("#matching-table", DataTable)
        with self.app.batch_update():
            table.clear()
            for index, row in enumerate(report_rows(plans, pair)):
                style = "bold" if row[0] in ("AMBIGUOUS", "DUPLICATE") else ""
                table.add_row(Text(row[0], style=style), *(safe_text(cell, width=40) for cell in row[1:]),
                              key=str(index))
        problems = sum(len(p.ambiguous) + len(p.duplicates) for p in plans)
        summary = (f"{sum(len(p.pairs) for p in plans)} pairs found, {problems} ambiguous/duplicate documents "
                   "— r runs it again; `erpsync-tui match --format csv` lists every pair")
        self.query_one("#matching-summary", Static).update(safe_text(summary, single_line=False))
        self.runs += 1


async def _plans(config: Any, db: Any) -> tuple[list[Any], tuple[str, str]]:
    from erpsync_tui.app_context import build_connectors
    from erpsync_tui.engine.matching import dry_run
    from erpsync_tui.engine.sync import SyncEngine

    connectors = build_connectors(config)
    try:
        engine = SyncEngine(config, db, connectors, actor="console-dry-run")
        return await dry_run(engine), engine.pair
    finally:
        for connector in connectors.values():
            await connector.aclose()
