"""Deletes whose webhook never came: read from each site's `Deleted Document` rows, and noticed by full syncs.

Frappe gives up on a webhook after three tries (reference §7), so a delete may never be reported. Every delete
writes a `Deleted Document` row (`deleted_doctype`, `deleted_name`, `creation`; §5b): the incremental sync
reads a site's rows since a per-site, per-doctype watermark and syncs each tracked name again. A full sync that
listed a site's doctype completely also syncs every tracked name the listing did not hold.

Either way the decision is the per-document one (`SyncEngine.sync_document`): it reads the document again,
and only a definite "not found" counts as a delete — then `propagate_deletes` and the delete-versus-edit rule
apply as for a delete reported by webhook. A failed or partial listing never infers a delete: a failed
listing keeps its watermark and stops, a resumed or limited full sync does not look for vanished names, and a
read that fails (not a 404) sends the document to the retry queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.store.models import RecordStatus, SyncName, SyncRecord

if TYPE_CHECKING:
    from erpsync_tui.engine.summary import SyncSummary
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")

DELETED_DOCUMENT = "Deleted Document"
WATERMARK_KIND = "deleted"  # watermark rows (site, <tracked doctype>, "deleted") over Deleted Document's `modified`
PAGE = 200


async def sync_missed_deletes(engine: SyncEngine, doctype: str, site: str, summary: SyncSummary) -> None:
    """Every `Deleted Document` row of `doctype` on `site` since the watermark whose name we track: synced again.

    Names we never tracked cost one state query per page and nothing else.
    """
    state = engine.state
    value, seen = await asyncio.to_thread(state.watermark, site, doctype, WATERMARK_KIND)
    rows = engine.connectors[site].list_documents(
        DELETED_DOCUMENT, fields=("name", "deleted_name", "modified"), filters=[["deleted_doctype", "=", doctype]],
        modified_since=value, page_size=PAGE, seen_at_watermark=seen,
    )
    page: list[dict[str, Any]] = []
    try:
        async for row in rows:
            page.append(row)
            if len(page) >= PAGE:
                value, seen = await _handle_page(engine, doctype, site, page, summary, value, seen)
                page = []
    except ConnectorError as exc:
        # Keep the position reached: the next run reads on from there. Nothing is inferred from a failed read.
        from erpsync_tui.engine.summary import _log_listing_failure

        summary.failed += 1
        await asyncio.to_thread(_log_listing_failure, engine, f"{DELETED_DOCUMENT} ({doctype})", site, exc)
        return
    if page:
        await _handle_page(engine, doctype, site, page, summary, value, seen)


async def _handle_page(
    engine: SyncEngine, doctype: str, site: str, page: list[dict[str, Any]], summary: SyncSummary,
    value: str | None, seen: list[str],
) -> tuple[str | None, list[str]]:
    names = [str(row.get("deleted_name") or "") for row in page if row.get("deleted_name")]
    tracked = await asyncio.to_thread(engine.state.mapped_names, site, doctype, names)
    for name in dict.fromkeys(n for n in names if n in tracked):
        await engine._log(f"deleted (noticed from Deleted Document): {doctype} {name} on {site}", "INFO",
                          doctype, site, name, outcome="noticed_delete")
        await _sync_one(engine, doctype, site, name, summary)
    last = page[-1].get("modified")
    seen = (seen if last == value else []) + [row["name"] for row in page if row.get("modified") == last]
    await asyncio.to_thread(engine.state.set_watermark, site, doctype, last, seen, WATERMARK_KIND)
    return last, seen


async def sync_vanished(engine: SyncEngine, doctype: str, site: str, listed: set[str], summary: SyncSummary) -> None:
    """After a COMPLETE listing of `doctype` on `site`: sync every tracked name the listing did not hold.

    The per-document sync reads each again; only a 404 makes it a delete (a document created after the
    listing passed its place is found and compared as usual).
    """
    tracked = await asyncio.to_thread(tracked_names, engine, site, doctype)
    vanished = sorted(tracked - listed)
    for name in vanished:
        await engine._log(f"{doctype} {name} on {site} is tracked but no longer listed: checking it", "INFO",
                          doctype, site, name, outcome="vanished")
        await _sync_one(engine, doctype, site, name, summary)


def tracked_names(engine: SyncEngine, site: str, doctype: str) -> set[str]:
    """Names on `site` of records of `doctype` still in sync (not already known as deleted)."""
    with engine.db.read() as session:
        rows = session.exec(
            select(SyncName.name).join(SyncRecord, SyncRecord.id == SyncName.record_id).where(
                SyncName.site == site, SyncName.doctype == doctype, SyncRecord.status != RecordStatus.DELETED)
        ).all()
    return set(rows)


async def _sync_one(engine: SyncEngine, doctype: str, site: str, name: str, summary: SyncSummary) -> None:
    from erpsync_tui.engine.summary import record_failure

    try:
        summary.add(await engine.sync_document(doctype, site, name))
    except Exception as exc:  # one document's failure must not stop the run: it goes to the queue
        summary.failed += 1
        await asyncio.to_thread(record_failure, engine, doctype, site, name, exc)
