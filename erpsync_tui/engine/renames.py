"""Renames (`frappe.client.rename_doc`, reference §5b): no webhook, no `Deleted Document`, links rewritten on the
renamed site. To a poller the old name vanishes and a document with its content appears under a new one.

A rename is recognised two ways, and then handled once (`apply_rename`):

* **The site's own word:** rename_doc leaves a `Comment` (comment_type "Edit", reference = the new name,
  "renamed from X to Y"). The incremental sync reads them since a per-site watermark, a full sync reads them
  before it walks the doctype, and a create of an unknown document asks for the one about its name.
* **Its content:** an unknown document whose content hash equals a tracked document's, whose name is gone
  (404) and left no `Deleted Document`. `content_match` is the hook for per-doctype matching rules (issue 13's
  `sync.match`): replace or extend it to match by business keys instead of the whole content.

Handling: the name map follows (no delete, no create). For doctypes named from a field (`autoname:
field:<f>`: the business key changed), the counterpart is renamed with rename_doc too — that site then rewrites
its own links; for series- or hash-named doctypes the counterpart keeps its own name and links there stay
valid. Then the document is synced as usual (content edited since the rename still propagates).
"""

from __future__ import annotations

import asyncio
import html
import re
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.connectors.frappe import name_chunks
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import RecordStatus, SyncName, SyncRecord

if TYPE_CHECKING:
    from erpsync_tui.engine.records import RecordView
    from erpsync_tui.engine.summary import SyncSummary
    from erpsync_tui.engine.sync import DocResult, Fetched, SyncEngine

COMMENT = "Comment"
WATERMARK_KIND = "renamed"
_TAGS = re.compile(r"<[^>]+>")


def parse_rename(content: str, new_name: str) -> str | None:
    """The old name in "renamed from X to Y" (Frappe wraps names in <strong>), given Y; None if not a rename."""
    text = html.unescape(_TAGS.sub("", content or "")).strip()
    prefix, suffix = "renamed from ", f" to {new_name}"
    if not text.lower().startswith(prefix) or not text.endswith(suffix):
        return None
    old = text[len(prefix):len(text) - len(suffix)].strip()
    return old or None


async def sync_renames(engine: SyncEngine, doctype: str, site: str, summary: SyncSummary) -> None:
    """Every rename Comment of `doctype` on `site` since the watermark: applied (see `apply_rename`)."""
    value, seen = await asyncio.to_thread(engine.state.watermark, site, doctype, WATERMARK_KIND)
    rows = engine.connectors[site].list_documents(
        COMMENT, fields=("name", "reference_name", "content", "modified"), modified_since=value,
        seen_at_watermark=seen, page_size=200,
        filters=[["reference_doctype", "=", doctype], ["comment_type", "=", "Edit"], ["content", "like", "%renamed%"]],
    )
    try:
        async for row in rows:
            new = str(row.get("reference_name") or "")
            old = parse_rename(str(row.get("content") or ""), new)
            if old is not None:
                await _apply_counted(engine, doctype, site, old, new, summary)
            last = row.get("modified")
            seen = (seen if last == value else []) + [row["name"]]
            value = last
            await asyncio.to_thread(engine.state.set_watermark, site, doctype, value, seen, WATERMARK_KIND)
    except ConnectorError as exc:  # e.g. no permission to read Comment: renames are then found by content
        from erpsync_tui.engine.summary import _log_listing_failure

        summary.failed += 1
        await asyncio.to_thread(_log_listing_failure, engine, f"{COMMENT} ({doctype} renames)", site, exc)


async def _apply_counted(engine: SyncEngine, doctype: str, site: str, old: str, new: str,
                         summary: SyncSummary) -> None:
    from erpsync_tui.engine.summary import record_failure

    try:
        result = await apply_rename(engine, doctype, site, old, new)
    except Exception as exc:  # to the queue under the new name, like any failed document
        summary.failed += 1
        await asyncio.to_thread(record_failure, engine, doctype, site, new, exc)
        return
    if result is not None:
        summary.add(result)


async def apply_rename(engine: SyncEngine, doctype: str, site: str, old: str, new: str) -> DocResult | None:
    """`old` on `site` is now `new`: move the name map, rename a field-named counterpart, then sync it.

    `old` untracked, or followed before: `new` is synced as it is. `new` gone as well (renamed, then deleted):
    `old` is synced, i.e. handled as gone. None when the site still has `old` (no rename of ours to follow).
    """
    record = await engine._run(engine.state.find, site, doctype, old)
    if record is None or await _holds(engine, record, site, doctype, new):
        # Followed already, or never tracked: sync the new name (once more). The listing's watermark may be past
        # it (a rename keeps `modified`), so nothing else may remember it — an edit whose push failed during the
        # sync that followed the rename, or a new document whose first sync failed before the rename.
        return await engine.sync_document(doctype, site, new)
    connector = engine.connectors[site]
    if await connector.get(doctype, old) is not None:
        return None
    if await connector.get(doctype, new) is None:
        # Renamed again since (X → Y → Z before we looked): follow the chain to the name it has now.
        newest = await renamed_to(engine, doctype, site, new)
        if newest is None:
            # Renamed, then deleted (or renamed again out of reach): `old` is gone, which its own sync handles as
            # configured — the Deleted Document row names a name never tracked, so nothing else would.
            return await engine.sync_document(doctype, site, old)
        if await _holds(engine, record, site, doctype, newest):
            return None
        new = newest
    async with engine.lock(doctype, site, new):
        moved = await move_names(engine, record, doctype, site, old, new)
    if not moved:
        return await engine.sync_document(doctype, site, old)  # `old` is gone: handled as configured for that
    return await engine.sync_document(doctype, site, new)


async def move_names(engine: SyncEngine, record: RecordView, doctype: str, site: str, old: str, new: str) -> bool:
    """The name map follows the rename; a field-named counterpart is renamed too (its site rewrites its links).

    False when `new` is already another record's document on `site` (synced as a new document before the rename
    was seen): the map is left as it is and the caller goes on as if there were no rename.
    """
    if not await engine._run(rename_side, engine, record.record_id, site, new) \
            and not await drop_our_copy(engine, record, doctype, site, new):
        await engine._log(f"renamed {old} → {new} on {site}, but {new} is already synced as another document: "
                          f"{old} is handled as gone", "WARNING", doctype, site, new, outcome="renamed",
                          code=ErrorCode.RECONCILIATION)
        return False
    other = engine.other(site)
    counterpart = record.sides.get(other)
    note = ""
    if counterpart is not None and counterpart.name != new and await named_by_field(engine, other, doctype):
        renamer: Any = engine.connectors[other]
        await renamer.rename_doc(doctype, counterpart.name, new)
        await engine._run(rename_side, engine, record.record_id, other, new)
        note = f"; renamed {counterpart.name} → {new} on {other}"
    elif counterpart is not None:
        note = f"; {other} keeps its name {counterpart.name}"
    await engine._log(f"renamed {old} → {new} on {site}{note}", "INFO", doctype, site, new, outcome="renamed")
    return True


def rename_side(engine: SyncEngine, record_id: int, site: str, new: str) -> bool:
    """Point the record's side on `site` at `new`. False (nothing changed) when another record already holds
    `new` there: that document was taken for a new one before the rename was seen, and is handled as such."""
    with engine.db.write() as session:
        row = session.exec(select(SyncName).where(SyncName.record_id == record_id, SyncName.site == site)).first()
        if row is None:
            return False
        taken = session.exec(select(SyncName.record_id).where(
            SyncName.site == site, SyncName.doctype == row.doctype, SyncName.name == new,
            SyncName.record_id != record_id)).first()
        if taken is not None:
            return False
        row.name = new
        session.add(row)
        return True


async def _holds(engine: SyncEngine, record: RecordView, site: str, doctype: str, name: str) -> bool:
    """Does `record` hold `name` on `site` already (the rename was handled before)?"""
    holder = await engine._run(engine.state.find, site, doctype, name)
    return holder is not None and holder.record_id == record.record_id


async def drop_our_copy(engine: SyncEngine, record: RecordView, doctype: str, site: str, new: str) -> bool:
    """`new` got a counterpart of its own on the other site before its rename was known, beside `record`'s (the one
    that site's links point at). Give `new` to `record`; False (nothing changed) when that cannot be done.

    The other counterpart: deleted when it is our own copy (inserted by the engine for `new`), unchanged since;
    otherwise — edited there since, or a document that site already held (paired by the matching rules) — it is
    someone's work: kept, set apart (status set_apart, ERP009: neither synced nor created back) for the operator.

    State first, then the DELETE: a crash between leaves an extra copy the holder record still explains (status
    deleted), never a name mapped to a deleted document (whose 404 would then read as a delete of `new`)."""
    other = engine.other(site)
    holder = await engine._run(engine.state.find, site, doctype, new)
    if holder is None or holder.record_id == record.record_id or other not in record.sides:
        return False
    copy = holder.sides.get(other)
    if copy is None or holder.status != RecordStatus.SYNCED:
        return False
    fetched = await engine.fetch(engine.config.policy_for(doctype), other, copy.name)
    if fetched.doc is None:
        return False
    ours = await engine._run(_made_from, engine, holder.record_id, site)
    if not ours or fetched.content_hash != copy.content_hash:
        return await _set_apart(engine, record, holder.record_id, doctype, site, new, copy.name, ours)
    if not await engine._run(_hand_over, engine, holder.record_id, record.record_id, site, new):
        return False
    try:
        await engine.connectors[other].delete(doctype, copy.name)
    except ConnectorError as exc:  # e.g. linked meanwhile: an extra copy stays, explained (its record: deleted)
        await engine._log(f"renamed {new} on {site}: the copy {copy.name} on {other} made before the rename was "
                          f"known could not be deleted ({exc}); it stays as an extra document", "WARNING", doctype,
                          other, copy.name, outcome="renamed", code=ErrorCode.RECONCILIATION)
        return True
    await engine._run(engine.state.forget_side, holder.record_id, other)
    await engine._log(f"deleted {copy.name} on {other}: the engine's own copy of {new}, made before {new} was known "
                      f"as a rename on {site}", "INFO", doctype, other, copy.name, outcome="renamed")
    return True


async def _set_apart(engine: SyncEngine, record: RecordView, holder_id: int, doctype: str, site: str, new: str,
                     kept: str, ours: bool) -> bool:
    other = engine.other(site)
    counterpart = record.sides[other].name
    what = "the engine's copy of it, edited there since" if ours else "a document that site already held"
    reason = (f"{new} on {site} is a renamed document whose counterpart is {counterpart}; {kept} ({what}) is kept "
              f"apart, not synced")
    if not await engine._run(_hand_over, engine, holder_id, record.record_id, site, new, RecordStatus.SET_APART,
                             reason):
        return False
    await engine._log(f"renamed to {new} on {site}: its counterpart on {other} is {counterpart}, the one {other}'s "
                      f"links point at. {kept} on {other} ({what}) is kept, set apart and not synced: copy what you "
                      f"need from it into {counterpart}, then delete {kept} on {other}", "WARNING", doctype, other,
                      kept, outcome="set_apart", code=ErrorCode.RECONCILIATION)
    return True


def _made_from(engine: SyncEngine, record_id: int, site: str) -> bool:
    with engine.db.read() as session:
        row = session.get(SyncRecord, record_id)
        return row is not None and row.origin_site == site


def _hand_over(engine: SyncEngine, holder_id: int, record_id: int, site: str, new: str,
               status: RecordStatus = RecordStatus.DELETED, reason: str | None = None) -> bool:
    """One transaction: `new` on `site` leaves the holder record (kept as `status`, with its document on the other
    site) and becomes `record_id`'s name there."""
    with engine.db.write() as session:
        rows = session.exec(select(SyncName).where(col(SyncName.record_id).in_([holder_id, record_id]),
                                                   SyncName.site == site)).all()
        theirs = next((r for r in rows if r.record_id == holder_id and r.name == new), None)
        mine = next((r for r in rows if r.record_id == record_id), None)
        holder = session.get(SyncRecord, holder_id)
        if theirs is None or mine is None or holder is None:
            return False
        session.delete(theirs)
        session.flush()  # the name is free before it is taken (unique per site and doctype)
        mine.name = new
        session.add(mine)
        holder.status, holder.last_error = status, reason or f"{new} on {site} is a renamed document"
        holder.error_code = str(ErrorCode.RECONCILIATION) if status == RecordStatus.SET_APART else None
        session.add(holder)
        return True


async def renamed_in_batch(engine: SyncEngine, doctype: str, site: str, names: list[str]) -> set[str]:
    """Which of these names a rename Comment names as a new name (one request): bulk creates of those go the
    per-document way, which follows the rename instead of creating a copy."""
    found: set[str] = set()
    for chunk in name_chunks(names):  # each chunk's JSON well inside a URL
        rows = engine.connectors[site].list_documents(COMMENT, fields=("name", "reference_name", "content"), filters=[
            ["reference_doctype", "=", doctype], ["comment_type", "=", "Edit"], ["reference_name", "in", chunk]],
            page_size=500, order_by="name asc")
        try:
            found.update([str(row.get("reference_name")) async for row in rows if parse_rename(
                str(row.get("content") or ""), str(row.get("reference_name") or "")) is not None])
        except ConnectorError:
            found.update(chunk)  # cannot tell: the per-document path asks again, document by document
    return found


async def named_by_field(engine: SyncEngine, site: str, doctype: str) -> bool:
    """Is `doctype` named from a field on `site` (DocType `autoname` "field:…")? Asked once per engine."""
    cache = engine.caches.named_by_field
    key = (site, doctype)
    if key not in cache:
        try:
            meta = await engine.connectors[site].get("DocType", doctype)
        except ConnectorError:
            return False  # unknown: keep the counterpart's name (never a wrong rename); asked again next time
        cache[key] = str((meta or {}).get("autoname") or "").startswith("field:")
    return cache[key]


# ------------------------------------------------------------------------------------ a tracked name gone (404)


async def renamed_to(engine: SyncEngine, doctype: str, site: str, old: str) -> str | None:
    """The name `old` on `site` now has, if a rename Comment says so and that document exists (follows a chain
    of renames); None otherwise — then the 404 is handled as a delete.

    A read that failed for a while (outage, rate limit, timeout: `retryable`) is raised, not taken for "no
    rename": the caller's 404 would otherwise delete the renamed document's counterpart. Only a lasting refusal
    (no permission to read Comments) counts as no answer."""
    current, seen = old, {old}
    connector = engine.connectors[site]
    for _ in range(5):
        rows = connector.list_documents(COMMENT, fields=("name", "reference_name", "content", "modified"), filters=[
            ["reference_doctype", "=", doctype], ["comment_type", "=", "Edit"], ["content", "like", f"%{current}%"]],
            page_size=50, limit=200)
        try:
            newer = [str(row.get("reference_name") or "") async for row in rows
                     if parse_rename(str(row.get("content") or ""), str(row.get("reference_name") or "")) == current]
        except ConnectorError as exc:
            if exc.retryable:
                raise
            return None
        newer = [n for n in newer if n and n not in seen]
        if not newer:
            return None
        current = newer[-1]
        seen.add(current)
        try:
            if await connector.get(doctype, current) is not None:
                return current
        except ConnectorError as exc:
            if exc.retryable:
                raise
            return None
    return None


# ------------------------------------------------------------------------------------ before a create


def suspects(engine: SyncEngine, site: str, doctype: str, hashes: list[str]) -> set[str]:
    """Which of these content hashes a tracked document on `site` had at its last sync (bulk creates: those go
    the per-document way, which tells a rename from a look-alike)."""
    found: set[str] = set()
    with engine.db.read() as session:
        for start in range(0, len(hashes), 500):
            found.update(session.exec(
                select(SyncName.content_hash).where(SyncName.site == site, SyncName.doctype == doctype,
                                                    col(SyncName.content_hash).in_(hashes[start:start + 500]))
            ).all())
    return {h for h in found if h}


def content_match(engine: SyncEngine, site: str, doctype: str, source: Fetched) -> list[str]:
    """Tracked names on `site` whose last synced content is exactly `source`'s: rename candidates.

    The hook for per-doctype matching rules (`sync.match`, issue 13): they may widen this to business keys.
    """
    with engine.db.read() as session:
        rows = session.exec(
            select(SyncName.name).join(SyncRecord, SyncRecord.id == SyncName.record_id).where(
                SyncName.site == site, SyncName.doctype == doctype, SyncName.content_hash == source.content_hash,
                SyncName.name != (source.name or ""), SyncRecord.status == RecordStatus.SYNCED)
        ).all()
    return list(rows)


async def renamed_from(engine: SyncEngine, doctype: str, source: Fetched) -> tuple[str, RecordView] | None:
    """The tracked document an unknown `source` was renamed from, if it is one: (old name, its record)."""
    site, name = source.site, source.name or ""
    connector = engine.connectors[site]
    candidates = await _earlier_names(engine, doctype, site, name)
    candidates += await engine._run(content_match, engine, site, doctype, source)
    for old in dict.fromkeys(candidates):
        record = await engine._run(engine.state.find, site, doctype, old)
        if record is None or record.status == RecordStatus.DELETED:
            continue
        if await connector.get(doctype, old) is not None:
            continue  # still there: a look-alike, not a rename
        if await _left_a_deleted_document(engine, site, doctype, old):
            continue  # deleted, and a new document happens to look the same: not a rename
        return old, record
    return None


async def _left_a_deleted_document(engine: SyncEngine, site: str, doctype: str, name: str) -> bool:
    rows = engine.connectors[site].list_documents(
        "Deleted Document", fields=("name",), filters=[["deleted_doctype", "=", doctype], ["deleted_name", "=", name]],
        limit=1)
    try:
        return any([row async for row in rows])
    except ConnectorError as exc:
        if exc.retryable:
            raise  # no answer for now: asked again later (going on would create a copy of a renamed document)
        return True  # cannot tell: never take a delete for a rename (the create path goes on as before)


async def _earlier_names(engine: SyncEngine, doctype: str, site: str, name: str) -> list[str]:
    """The names `name` had before, nearest first, from the rename Comments: X → Y → `name` gives [Y, X].

    A document renamed twice before the engine looked has an untracked middle name; only the chain leads back to
    the tracked one. A Comment read that failed for a while is raised (a create now would copy a renamed
    document); a lasting refusal (no permission on Comment) leaves the content as the only evidence.
    """
    found: list[str] = []
    current = name
    for _ in range(5):
        rows = engine.connectors[site].list_documents(
            COMMENT, fields=("name", "reference_name", "content", "modified"), filters=[
                ["reference_doctype", "=", doctype], ["reference_name", "=", current], ["comment_type", "=", "Edit"]],
            page_size=20, limit=20)
        try:
            olds = [old async for row in rows if (old := parse_rename(str(row.get("content") or ""), current))]
        except ConnectorError as exc:
            if exc.retryable:
                raise
            return found
        olds = [old for old in olds if old != name and old not in found]
        if not olds:
            return found
        found += olds
        current = olds[-1]
    return found
