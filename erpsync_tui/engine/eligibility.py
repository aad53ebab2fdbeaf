"""May list rows stand for whole documents? The bulk path's once-per-doctype checks, and the listed row itself."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine.links import link_fields
from erpsync_tui.engine.records import Side

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")


@dataclass(slots=True)
class _Row:
    """A source document as listed, in canonical form."""

    site: str
    name: str
    doc: dict[str, Any]
    canonical: dict[str, Any]
    content_hash: str
    text: str  # the canonical JSON the hash is of: stored as it is (serialised once)

    @property
    def side(self) -> Side:
        return Side(self.site, self.name, self.content_hash, self.doc.get("modified"))


async def bulk_eligible(engine: SyncEngine, doctype: str) -> bool:
    """Can list rows stand for whole documents of `doctype` on both sites? Asked once per engine and doctype.

    Yes when neither site's meta (DocType fields plus Custom Fields) has a Table field, and the connectors can
    insert in batches. Meta that cannot be read (no permission to read DocType, another ERP) means no: the
    per-document path needs nothing of the kind.
    """
    cache = engine.caches.bulk_eligible
    if doctype in cache:
        return cache[doctype]
    eligible = True
    for site in engine.pair:
        connector: Any = engine.connectors[site]
        if not all(hasattr(connector, m) for m in ("insert_many", "table_fields", "rows_by_name")):
            eligible = False
            break
        try:
            tables = await connector.table_fields(doctype)
        except ConnectorError as exc:
            log.info("bulk path off for %s: meta of %s unreadable (%s)", doctype, site, exc)
            eligible = False
            break
        if tables:
            eligible = False
            break
    if any("." in path for path in link_fields(doctype, engine.config.policy_for(doctype).links)):
        eligible = False  # links inside child rows: the doctype has tables after all
    cache[doctype] = eligible
    return eligible


async def _rows_are_documents(engine: SyncEngine, doctype: str, site: str, row: dict[str, Any]) -> bool:
    """Belt and braces, once per doctype and site: one listed row must hash like the document read in full.

    Batches in flight together share the one check (and its one read).
    """
    checked = engine.caches.rows_checked
    key = (doctype, site)
    if key not in checked:
        checked[key] = asyncio.ensure_future(_row_is_document(engine, doctype, site, row))
    check = checked[key]
    try:
        return await asyncio.shield(check)
    except Exception:
        if checked.get(key) is check:
            del checked[key]  # the read failed: the next batch asks again
        raise


async def _row_is_document(engine: SyncEngine, doctype: str, site: str, row: dict[str, Any]) -> bool:
    policy = engine.config.policy_for(doctype)
    full = await engine.fetch(policy, site, row["name"])
    listed = await engine.fetched(policy, site, row)
    same = full.doc is None or full.content_hash == listed.content_hash
    if not same:
        log.warning("bulk path off for %s on %s: a listed row differs from the document", doctype, site)
    return same


