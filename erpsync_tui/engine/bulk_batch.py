"""One batch of listed documents written the bulk way: creates by `insert_many`, updates by concurrent PUTs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import CircuitOpen, ConnectorError
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine import lifecycle, renames
from erpsync_tui.engine.eligibility import _Row, _rows_are_documents
from erpsync_tui.engine.links import link_fields, linked_names, translate
from erpsync_tui.engine.outcomes import DocResult, Fetched, Outcome, SyncFailed
from erpsync_tui.engine.records import RecordView, Side
from erpsync_tui.engine.summary import SyncSummary, record_failure
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import RecordStatus

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")

INSERT_MANY_MAX = 200  # documents per frappe.client.insert_many call (the site refuses more)


# ============================================================================================ bulk full sync
#
# A full sync of a doctype without child tables reads the source in pages of whole documents (`fields=["*"]`
# returns every parent column; child tables are not in list results, §3), so it needs no per-document GET.
# Per batch: one state read, one read of the counterparts on the target, the creates as `insert_many` calls of at
# most 200 (their intents committed in one transaction before the first is sent), the updates as concurrent PUTs,
# and then the state and the log lines of the whole batch in one transaction. Anything unusual — a conflict, a
# change on the target, a link not mapped yet, a failed call, a possible echo — goes the per-document way
# (`SyncEngine.sync_document`), which decides exactly as before.

async def _bulk_batch(
    engine: SyncEngine,
    doctype: str,
    site: str,
    rows: list[dict[str, Any]],
    summary: SyncSummary,
    *,
    force_from: str | None,
) -> None:
    if not rows:
        return
    if not await _rows_are_documents(engine, doctype, site, rows[0]):
        await _sync_batch(engine, doctype, site, [r["name"] for r in rows], summary, force_from=force_from,
                          modified={r["name"]: r.get("modified") for r in rows})
        return
    held: dict[str, asyncio.Lock] = {}
    fallback: list[str] = []
    busy: list[str] = []
    mine: list[dict[str, Any]] = []
    for row in rows:  # the per-document locks: a webhook-driven sync of the same document waits for us
        lock = engine.lock(doctype, site, row["name"])
        if lock.locked() or row["name"] in held:
            busy.append(row["name"])  # being synced right now (a webhook, another run): wait for it below
        else:
            await lock.acquire()
            held[row["name"]] = lock
            mine.append(row)

    def release(names: list[str]) -> None:
        """Let go of documents this batch will not write as soon as that is known (others may wait for them)."""
        for name in names:
            lock = held.pop(name, None)
            if lock is not None:
                lock.release()

    try:
        pool = engine.batch_pool
        ran = await pool.run(doctype, site, mine, force_from, engine.fence) if pool and mine else None
        if ran is None:
            fallback += await _bulk_locked(engine, doctype, site, mine, summary, force_from=force_from,
                                           release=release)
        else:  # a batch process ran it (engine/batch_pool.py), under the locks this process holds
            part, handed_back = ran
            summary.merge(part)
            fallback += handed_back
    finally:
        release(list(held))
    if busy:  # unchanged since recorded (by the sync that held it, often): no request, as in _sync_batch
        await _sync_batch(engine, doctype, site, busy, summary, force_from=force_from,
                          modified={r["name"]: r.get("modified") for r in rows})
    if fallback:
        await _sync_batch(engine, doctype, site, fallback, summary, force_from=force_from, skip_known=False)


async def _bulk_locked(
    engine: SyncEngine,
    doctype: str,
    site: str,
    rows: list[dict[str, Any]],
    summary: SyncSummary,
    *,
    force_from: str | None,
    release: Callable[[list[str]], None],
) -> list[str]:
    """The batch under its locks; returns the names to hand to the per-document path."""
    policy = engine.config.policy_for(doctype)
    target = engine.other(site)
    records = await asyncio.to_thread(engine.state.find_many, site, doctype, [r["name"] for r in rows])
    fallback: list[str] = []
    todo: list[dict[str, Any]] = []
    for row in rows:
        record = records.get(row["name"])
        side = record.sides.get(site) if record else None
        if (force_from is None and record is not None and record.status == RecordStatus.SYNCED and side is not None
                and side.content_hash is not None and side.modified == row.get("modified")):
            summary.processed += 1  # synced at exactly this `modified`: nothing to read or write
            summary.outcomes[str(Outcome.SKIPPED)] += 1
        else:
            todo.append(row)
    pending = {row["name"] for row in todo}
    release([row["name"] for row in rows if row["name"] not in pending])
    prepared = await asyncio.to_thread(_prepare, engine, policy, site, target, todo)
    creates: list[tuple[_Row, dict[str, Any]]] = []
    compares: list[tuple[_Row, RecordView]] = []
    for row, item in zip(todo, prepared, strict=True):
        record = records.get(row["name"])
        if item is None:
            fallback.append(row["name"])
        elif record is None:
            if item[1] is None or row.get("amended_from"):
                # A link the target does not have yet: synced first, one by one. An amendment too: its original
                # goes first, and the pairing could not match it while that original had no counterpart.
                fallback.append(row["name"])
            else:
                creates.append((item[0], item[1]))
        elif record.status == RecordStatus.SYNCED and site in record.sides and target in record.sides:
            compares.append((item[0], record))
        else:
            fallback.append(row["name"])  # half-made, deleted, in conflict: the per-document path decides
    if creates:  # a tracked document's content under a new name may be a rename: the per-document path tells
        hashes = [row.content_hash for row, _ in creates]
        suspect = await asyncio.to_thread(renames.suspects, engine, site, doctype, hashes)
        renamed = await renames.renamed_in_batch(engine, doctype, site, [row.name for row, _ in creates])
        fallback += [row.name for row, _ in creates if row.content_hash in suspect or row.name in renamed]
        creates = [(row, body) for row, body in creates if row.content_hash not in suspect and row.name not in renamed]
    release(fallback)
    batch = _Batch(engine, policy, site, target, summary)
    fallback += await batch.creates(creates)
    fallback += await batch.compares(compares, force_from)
    await batch.commit()
    return fallback


def _prepare(
    engine: SyncEngine, policy: DoctypePolicy, site: str, target: str, rows: list[dict[str, Any]]
) -> list[tuple[_Row, dict[str, Any] | None] | None]:
    """Canonical form and hash of each source row, and its create body in the target's names (None: a link is
    not mapped yet). None for a row that cannot be brought into canonical form. Reads the DB: off the loop."""
    fields = link_fields(policy.doctype, policy.links)
    out: list[tuple[_Row, dict[str, Any] | None] | None] = []
    for row in rows:
        try:
            canonical = engine.canonical(policy, site, row)
        except SyncFailed:
            out.append(None)
            continue
        text = docs.canonical_json(canonical)
        item = _Row(site, row["name"], row, canonical, docs.hash_of_json(text), text)
        body: dict[str, Any] | None = canonical
        if fields:
            mapper = engine.name_mapper(site, target)
            if any(mapper(dt, name) is None for dt, name in linked_names(row, fields)):
                body = None
            elif target != engine.pair[0]:
                body, missing = translate(canonical, fields, engine.name_mapper(engine.pair[0], target))
                body = None if missing else body
        # `body` is in normal form already: `to_write_payload(body)` would only normalise it again (a fixed point).
        out.append((item, dict(body) if body is not None else None))
    return out


class _Batch:
    """The writes of one batch and what to record afterwards (state and log lines, one transaction)."""

    def __init__(self, engine: SyncEngine, policy: DoctypePolicy, site: str, target: str,
                 summary: SyncSummary) -> None:
        self.engine, self.policy, self.site, self.target, self.summary = engine, policy, site, target, summary
        self.doctype = policy.doctype
        self.synced: list[tuple[int, dict[str, Any], str, list[Side]]] = []
        self.texts: list[tuple[dict[str, Any], str]] = []  # each base and its canonical JSON
        self.logs: list[dict[str, Any]] = []
        self.failures: list[tuple[str, BaseException]] = []
        self.direction = f"{site}→{target}"

    def done(self, record_id: int, source: _Row, target_side: Side, outcome: Outcome, writes: int,
             direction: str | None) -> None:
        base = source.canonical
        self.synced.append((record_id, base, source.content_hash, [source.side, target_side]))
        self.texts.append((base, source.text))
        self.summary.add(DocResult(self.doctype, self.site, source.name, outcome, writes, direction))
        self.logs.append({"message": f"{outcome}: {self.doctype} {source.name}", "level": "INFO", "site": self.site,
                          "doctype": self.doctype, "name": source.name, "outcome": str(outcome),
                          "direction": direction})

    async def commit(self) -> None:
        if self.synced or self.logs:
            await asyncio.to_thread(self.engine.state.mark_synced_many, self.doctype, self.synced, self.logs,
                                    texts=self.texts)
        for name, exc in self.failures:
            self.summary.failed += 1
            await asyncio.to_thread(record_failure, self.engine, self.doctype, self.site, name, exc)

    # ------------------------------------------------------------------------------------ creates

    async def creates(self, creates: list[tuple[_Row, dict[str, Any]]]) -> list[str]:
        if not creates:
            return []
        intents = [(row.side, row.canonical, row.content_hash) for row, _ in creates]
        records, left_out = await asyncio.to_thread(self.engine.state.begin_create_many, self.doctype, intents,
                                                    target=self.target, fence=self.engine.fence,
                                                    texts=[(row.canonical, row.text) for row, _ in creates])
        todo = [(row, body, records[row.name]) for row, body in creates if row.name in records]
        chunks = [todo[i:i + INSERT_MANY_MAX] for i in range(0, len(todo), INSERT_MANY_MAX)]
        semaphore = asyncio.Semaphore(max(1, self.engine.config.sync.concurrency // 4))

        async def run(chunk: list[tuple[_Row, dict[str, Any], RecordView]]) -> list[str]:
            async with semaphore:
                return await self._insert_chunk(chunk)

        results = await asyncio.gather(*(run(chunk) for chunk in chunks))
        return left_out + [name for names in results for name in names]

    async def _insert_chunk(self, chunk: list[tuple[_Row, dict[str, Any], RecordView]]) -> list[str]:
        connector: Any = self.engine.connectors[self.target]
        try:
            names = await connector.insert_many(self.doctype, [body for _, body, _ in chunk])
        except ConnectorError as exc:
            if _certainly_not_applied(exc):
                # The site answered with an error: the call's transaction rolled back, nothing was created. Forget
                # the intents (so no lost-create search runs) and let the per-document path find the culprit.
                await asyncio.to_thread(self.engine.state.discard_creates, [rec.record_id for _, _, rec in chunk])
                return [row.name for row, _, _ in chunk]
            # The answer was lost: the documents may exist. The intents stay; the queue's retry finds them by
            # content (SyncEngine._find_lost_create) instead of creating them again.
            self.failures += [(row.name, exc) for row, _, _ in chunk]
            return []
        created = await self._read_back(names)
        by_hash: dict[str, list[Fetched]] = {}
        for fetched in created:
            by_hash.setdefault(fetched.content_hash, []).append(fetched)
        unpaired: list[tuple[_Row, RecordView]] = []
        for row, _, record in chunk:
            match = by_hash.get(row.content_hash)
            if match:
                self.done(record.record_id, row, _side_of(match.pop(0)), Outcome.CREATED, 1, self.direction)
            else:
                unpaired.append((row, record))
        # Content that does not round-trip (the target added a default): pair the rest in the order the names came.
        left = {id(f) for group in by_hash.values() for f in group}
        rest = [f for f in created if id(f) in left]
        for (row, record), fetched in zip(unpaired, rest, strict=False):
            self.done(record.record_id, row, _side_of(fetched), Outcome.CREATED, 1, self.direction)
        for row, _ in unpaired[len(rest):]:
            self.failures.append((row.name, SyncFailed(
                f"{self.doctype} {row.name}: created on {self.target} but not found there afterwards",
                code=ErrorCode.RECONCILIATION)))
        return []

    async def _read_back(self, names: list[str]) -> list[Fetched]:
        """The created documents, in the order of `names` (one list request per chunk of names)."""
        connector: Any = self.engine.connectors[self.target]
        rows = await connector.rows_by_name(self.doctype, names)
        listed = [rows[n] for n in names if n in rows]
        return await asyncio.to_thread(
            lambda: [_fetched_now(self.engine, self.policy, self.target, row) for row in listed])

    # ------------------------------------------------------------------------------------ documents on both sides

    async def compares(self, compares: list[tuple[_Row, RecordView]], force_from: str | None) -> list[str]:
        if not compares:
            return []
        names = [record.sides[self.target].name for _, record in compares]
        connector: Any = self.engine.connectors[self.target]
        try:
            rows = await connector.rows_by_name(self.doctype, names)
        except ConnectorError:
            return [source.name for source, _ in compares]
        listed = await asyncio.to_thread(lambda: {
            name: _fetched_now(self.engine, self.policy, self.target, row) for name, row in rows.items()})
        fallback: list[str] = []
        pushes: list[tuple[_Row, RecordView, Fetched]] = []
        for source, record in compares:
            current = listed.get(record.sides[self.target].name)
            if current is None:
                fallback.append(source.name)  # gone (or renamed) on the target
            elif current.content_hash == source.content_hash:
                self.done(record.record_id, source, _side_of(current), Outcome.SKIPPED, 0, None)
            elif force_from == self.site or (
                    source.content_hash != record.sides[self.site].content_hash
                    and current.content_hash == record.sides[self.target].content_hash):
                pushes.append((source, record, current))
            else:
                fallback.append(source.name)  # changed on the target, or on both: merge, policy or conflict
        semaphore = asyncio.Semaphore(self.engine.config.sync.concurrency)

        async def push(source: _Row, record: RecordView, current: Fetched) -> str | None:
            async with semaphore:
                try:
                    body = await self.engine.target_body(self.policy, source.canonical, self.target)
                    normal = docs.normalise(current.doc or {}, self.policy.exclude_fields)
                    payload = docs.to_write_payload(body, normal, expected_modified=current.modified)
                    if len(lifecycle.update_steps(current.doc or {}, payload, self.policy.exclude_fields)) > 1:
                        return source.name  # e.g. submitted then cancelled: the per-document path saves in order
                    answer = await connector.update(self.doctype, current.name or "", payload)
                    written = await self.engine.fetched(self.policy, self.target, answer)
                except Exception as exc:  # stale, refused, a link missing: the per-document path decides again
                    if lifecycle.is_refusal(exc):  # submitted/cancelled there: terminal (ERP008), not sent again
                        self.summary.add(await lifecycle.refused_in_batch(self.engine, record, self.site, source.doc,
                                                                          current, exc))
                        return None
                    return source.name
                self.done(record.record_id, source, _side_of(written), Outcome.UPDATED, 1, self.direction)
                return None

        results = await asyncio.gather(*(push(*item) for item in pushes))
        return fallback + [name for name in results if name is not None]


def _fetched_now(engine: SyncEngine, policy: DoctypePolicy, site: str, doc: dict[str, Any]) -> Fetched:
    canonical = engine.canonical(policy, site, doc)
    return Fetched(site, doc, canonical, docs.content_hash(canonical))


def _side_of(fetched: Fetched) -> Side:
    return Side(fetched.site, fetched.name or "", fetched.content_hash, fetched.modified)


def _certainly_not_applied(exc: ConnectorError) -> bool:
    """Did the site answer this insert_many with its own error (so its transaction rolled back)?

    A Frappe error body (exc_type present), or a 4xx: the request ran and failed, or was refused. A bare 502/504,
    a timeout or a dropped connection: unknown — it may have committed.
    """
    if isinstance(exc, CircuitOpen):
        return True  # never sent
    if exc.exc_type is not None:
        return True
    return exc.status is not None and 400 <= exc.status < 500


async def _sync_batch(
    engine: SyncEngine,
    doctype: str,
    site: str,
    names: list[str],
    summary: SyncSummary,
    *,
    force_from: str | None,
    skip_known: bool = True,
    modified: dict[str, Any] | None = None,
) -> None:
    """Sync a batch concurrently (bounded); a document already synced at the listed `modified` costs no request."""
    if skip_known and modified and force_from is None:
        known = await asyncio.to_thread(engine.state.known_modified, site, doctype, names)
        unchanged = [n for n in names if n in known and known[n] == modified.get(n)]
        summary.processed += len(unchanged)
        summary.outcomes[str(Outcome.SKIPPED)] += len(unchanged)
        names = [n for n in names if n not in set(unchanged)]
    semaphore = asyncio.Semaphore(engine.config.sync.concurrency)

    async def one(name: str) -> None:
        async with semaphore:
            try:
                summary.add(await engine.sync_document(doctype, site, name, force_from=force_from))
            except Exception as exc:  # one document's failure must not stop the run: it goes to the queue
                summary.failed += 1
                await asyncio.to_thread(record_failure, engine, doctype, site, name, exc)

    await asyncio.gather(*(one(n) for n in names))
