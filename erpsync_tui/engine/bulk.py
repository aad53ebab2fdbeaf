"""Many documents at once: full sync (resumable), incremental sync from watermarks, reconciliation."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from time import perf_counter
from typing import Any

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import CircuitOpen, ConnectorError
from erpsync_tui.engine import deletes, renames
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine.links import link_fields, linked_names, translate
from erpsync_tui.engine.matching import MatchingFailed, pair_before_sync
from erpsync_tui.engine.reconcile import Difference, ReconcileReport, reconcile  # noqa: F401  (moved; old imports)
from erpsync_tui.engine.state import RecordView, Side
from erpsync_tui.engine.sync import DocResult, Fetched, Outcome, SyncEngine, SyncFailed, failure_code
from erpsync_tui.errors import ErrorCode
from erpsync_tui.secrets import redact
from erpsync_tui.store import queue
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueKind, QueueStatus, RecordStatus, utcnow

log = logging.getLogger("erpsync.engine")

INSERT_MANY_MAX = 200  # documents per frappe.client.insert_many call (the site refuses more)

Progress = Callable[[str, int], None]  # (what, documents done so far in this pass)


@dataclass
class SyncSummary:
    processed: int = 0
    writes: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    paired: int = 0  # documents both sites already held, paired by the matching rules before the walk

    def add(self, result: DocResult) -> None:
        self.processed += 1
        self.writes += result.writes
        self.outcomes[str(result.outcome)] += 1

    def merge(self, part: dict[str, Any]) -> None:
        """Add another summary's counts (as_dict() of one, e.g. from a batch worker)."""
        self.processed += part["processed"]
        self.writes += part["writes"]
        self.failed += part["failed"]
        self.outcomes.update(part["outcomes"])

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = dict(self.outcomes)
        return data


def sources_for(engine: SyncEngine, direction: str) -> list[str]:
    """Which sites' documents to walk: both for "auto", else the source of "<a>_to_<b>"."""
    if direction == "auto":
        return list(engine.pair)
    for site in engine.pair:
        if direction == f"{site}_to_{engine.other(site)}":
            return [site]
    valid = ", ".join(["auto", *(f"{s}_to_{engine.other(s)}" for s in engine.pair)])
    raise ValueError(f"direction must be one of {valid}, not {direction!r}")


async def full_sync(
    engine: SyncEngine,
    *,
    doctypes: Sequence[str] | None = None,
    docname: str | None = None,
    direction: str = "auto",
    limit: int | None = None,
    progress: Progress | None = None,
) -> SyncSummary:
    """Every document of each doctype (config order), batch by batch; a checkpoint lets it resume."""
    summary, started = SyncSummary(), perf_counter()
    sources = sources_for(engine, direction)
    force = sources[0] if direction != "auto" else None
    for doctype in doctypes or engine.config.sync.doctypes:
        if docname is None:
            for site in sources:  # renames first: neither the pairing pass nor the walk may take a new name as new
                await renames.sync_renames(engine, doctype, site, summary)
        paired = docname is not None or await _pair_first(engine, doctype, summary, sources)
        for site in sources:
            if docname is not None:
                await _sync_batch(engine, doctype, site, [docname], summary, force_from=force, skip_known=False)
                continue
            # Only a listing read from the start to the end tells which tracked names are gone (never a resumed,
            # limited or failed one): those are synced again, and a 404 then makes them deletes (engine/deletes.py).
            resumed = (await asyncio.to_thread(engine.state.watermark, site, doctype, "full"))[0] is not None
            listed: set[str] | None = None if resumed or limit is not None else set()
            complete = await _walk(engine, doctype, site, "full", summary, limit=limit, force_from=force,
                                   progress=progress, bulk_ok=paired, listed=listed)
            if complete and listed is not None:
                await deletes.sync_vanished(engine, doctype, site, listed, summary)
    summary.seconds = perf_counter() - started
    return summary


async def _pair_first(engine: SyncEngine, doctype: str, summary: SyncSummary, sources: Sequence[str]) -> bool:
    """Pair the documents both sites already hold before the walk creates anything (engine/matching.py).

    False when the sites cannot be listed by the matching fields (a site down, a rule naming an unknown field):
    the walk then takes the per-document path, whose every create asks the other site for its match first — and
    fails, to the queue, while it cannot. Creating without knowing what the other site holds makes duplicates.
    """
    if not await _settle_unfinished_creates(engine, doctype, summary, sources):
        return False  # one could not be settled: per document, each create first retries the one it matches
    whole_rows = None
    if await bulk_eligible(engine, doctype):
        async def whole_rows(site: str, row: dict[str, Any]) -> bool:
            try:
                return await _rows_are_documents(engine, doctype, site, row)
            except ConnectorError:
                return False  # unverified: the pairs are recorded without a base and compared by the walk
    try:
        plan = await pair_before_sync(engine, doctype, whole_rows)
    except MatchingFailed as exc:
        await asyncio.to_thread(_log_matching_failure, engine, doctype, exc)
        return False
    summary.paired += len(plan.pairs)
    settled = True
    policy = engine.config.policy_for(doctype)
    for site, name, there in plan.orphans:  # the per-document path settles the vanished counterpart, matching first
        try:
            if await _renamed_there(engine, policy, engine.other(site), there):
                continue  # its counterpart renamed (told by content): the walk follows the new name
            summary.add(await engine.sync_document(doctype, site, name))
        except Exception as exc:  # recorded and retried from the queue, as in the walk
            settled = False
            summary.failed += 1
            await asyncio.to_thread(record_failure, engine, doctype, site, name, exc)
    return settled


async def _renamed_there(engine: SyncEngine, policy: DoctypePolicy, site: str, names: list[str]) -> bool:
    for name in names:
        fetched = await engine._fetch(policy, site, name)
        if fetched.doc is not None and await renames.renamed_from(engine, policy.doctype, fetched) is not None:
            return True
    return False


async def _settle_unfinished_creates(engine: SyncEngine, doctype: str, summary: SyncSummary,
                                     sources: Sequence[str]) -> bool:
    """Retry the creates whose answer was lost (one-sided `creating` records) that the walk meets too late.

    Their copy may exist on the target, unknown to the state: walked before its source (the pairing leaves
    tracked documents alone) it would be created back on the source site, and the source's retry would then make
    a second copy — a duplicate on each site. The retry recognises its copy (hash, owner, matching rules). Only
    creates whose target is walked before their source need this. False when one failed (recorded for a retry
    like any walk failure).
    """
    settled = True
    for target in engine.pair:
        source = engine.other(target)
        if target not in sources or (source in sources and sources.index(source) < sources.index(target)):
            continue  # the walk retries it before it meets the copy, or never meets the copy
        pending = await asyncio.to_thread(engine.state.pending_creates, doctype, target)
        for name in [p.record.sides[source].name for p in pending if list(p.record.sides) == [source]]:
            try:
                summary.add(await engine.sync_document(doctype, source, name))
            except Exception as exc:  # recorded and retried from the queue, as in the walk
                settled = False
                summary.failed += 1
                await asyncio.to_thread(record_failure, engine, doctype, source, name, exc)
    return settled


def _log_matching_failure(engine: SyncEngine, doctype: str, exc: MatchingFailed) -> None:
    log.warning("matching failed code=%s %s: %s", ErrorCode.FIELD_MAPPING, doctype, exc)
    with engine.db.write() as session:
        add_log(session, f"{exc}; {doctype}: each document is matched on its own before any create "
                         f"(check sync.match.{doctype} if this repeats)", level="WARNING", doctype=doctype,
                outcome="failed", error_code=str(ErrorCode.FIELD_MAPPING))


async def incremental_sync(engine: SyncEngine, *, doctypes: Sequence[str] | None = None) -> SyncSummary:
    """Documents modified since each site's stored watermark: the safety net under webhooks."""
    summary, started = SyncSummary(), perf_counter()
    for doctype in doctypes or engine.config.sync.doctypes:
        for site in engine.pair:
            await lifecycle_feed(engine, doctype, site, summary)
            await _walk(engine, doctype, site, "incremental", summary)
    summary.seconds = perf_counter() - started
    return summary


async def lifecycle_feed(engine: SyncEngine, doctype: str, site: str, summary: SyncSummary) -> None:
    """What no webhook and no `modified` listing reports: renames (engine/renames.py) and deletes whose webhook was
    lost (engine/deletes.py).

    (A full sync needs no feed: its complete listing shows which tracked names are gone.)
    """
    await renames.sync_renames(engine, doctype, site, summary)
    await deletes.sync_missed_deletes(engine, doctype, site, summary)


# Batches of a bulk full sync in flight at once: the next batch's reads and writes overlap this one's last
# requests and its state commit. Each batch's checkpoint is still saved only after every earlier batch's.
BULK_BATCHES_IN_FLIGHT = 2


async def _walk(
    engine: SyncEngine,
    doctype: str,
    site: str,
    kind: str,
    summary: SyncSummary,
    *,
    limit: int | None = None,
    force_from: str | None = None,
    progress: Progress | None = None,
    bulk_ok: bool = True,
    listed: set[str] | None = None,
) -> bool:
    """Page through a site's documents from the stored position, syncing in batches and saving the position.

    True when the listing was read to its end (every listed name is added to `listed` if given).

    The listing reads ahead of the batches being synced (it only reads the source). A bulk full sync also starts
    the next batch before the current one has finished; the checkpoint after a batch is saved once that batch
    and every batch before it are done, so a resume never skips a document.
    """
    state, batch_size = engine.state, engine.config.sync.batch_size
    value, seen = await asyncio.to_thread(state.watermark, site, doctype, kind)
    bulk = kind == "full" and bulk_ok and await bulk_eligible(engine, doctype)
    rows = engine.connectors[site].list_documents(
        doctype, fields=("*",) if bulk else ("name", "modified"), modified_since=value,
        page_size=max(batch_size, 100), limit=limit, seen_at_watermark=seen,
    )
    batches: asyncio.Queue[list[dict[str, Any]] | BaseException | None] = asyncio.Queue(maxsize=1)
    reader = asyncio.create_task(_read_batches(rows, batch_size, batches))
    in_flight: collections.deque[tuple[asyncio.Task[bool], int]] = collections.deque()
    workers = engine.batch_workers
    depth = max(BULK_BATCHES_IN_FLIGHT, 2 * workers.processes if workers and workers.usable else 0) if bulk else 1
    done = 0

    async def finish_oldest() -> None:
        nonlocal done
        task, size = in_flight.popleft()
        await task
        done += size
        if progress:
            progress(f"{doctype} from {site}", done)

    try:
        while (item := await batches.get()) is not None:
            if isinstance(item, ConnectorError):
                # The listing itself failed: keep the checkpoint (the next run resumes there) and go on with the
                # rest once the batches already started are done.
                while in_flight:
                    await finish_oldest()
                summary.failed += 1
                await asyncio.to_thread(_log_listing_failure, engine, doctype, site, item)
                return False
            if isinstance(item, BaseException):
                raise item
            if listed is not None:
                listed.update(row["name"] for row in item)
            # The next position: the last `modified` handled, with every name already handled at exactly that value.
            last = item[-1].get("modified")
            seen = (seen if last == value else []) + [row["name"] for row in item if row.get("modified") == last]
            value = last
            previous = in_flight[-1][0] if in_flight else None
            in_flight.append((asyncio.create_task(_finish_batch(
                engine, doctype, site, kind, item, summary, force_from, value, seen, bulk, after=previous)),
                len(item)))
            while len(in_flight) >= depth:
                await finish_oldest()
        while in_flight:
            await finish_oldest()
    except asyncio.CancelledError:
        for task, _ in in_flight:  # stopped from outside: so are the batches, as when they ran inline
            task.cancel()
        raise
    finally:
        reader.cancel()
        pending = [task for task, _ in in_flight]
        if pending:  # a batch failed: let the one started after it end (it saves no position) before going up
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(reader, return_exceptions=True)
    if kind == "full" and limit is None:
        await asyncio.to_thread(state.set_watermark, site, doctype, None, [], kind)  # finished: start over next time
    return True


async def _read_batches(
    rows: AsyncIterator[dict[str, Any]], batch_size: int,
    out: asyncio.Queue[list[dict[str, Any]] | BaseException | None],
) -> None:
    """The listing in batches of `batch_size` rows, then None; an error instead of the batch it interrupted."""
    batch: list[dict[str, Any]] = []
    try:
        async for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                await out.put(batch)
                batch = []
    except Exception as exc:  # handed to the walk, which meets it where a plain loop would have
        await out.put(exc)
        return
    if batch:
        await out.put(batch)
    await out.put(None)


async def _finish_batch(
    engine: SyncEngine,
    doctype: str,
    site: str,
    kind: str,
    batch: list[dict[str, Any]],
    summary: SyncSummary,
    force_from: str | None,
    value: str | None,
    seen: list[str],
    bulk: bool = False,
    after: asyncio.Task[bool] | None = None,
) -> bool:
    """Sync a batch, then (once `after`, the batch before, has saved its position) save the position after it.

    False when the position was not saved because an earlier batch failed.
    """
    names = [row["name"] for row in batch]
    modified = {row["name"]: row.get("modified") for row in batch}
    if bulk:
        await _bulk_batch(engine, doctype, site, batch, summary, force_from=force_from)
    else:
        await _sync_batch(engine, doctype, site, names, summary, force_from=force_from, modified=modified)
    if after is not None:
        await asyncio.wait([after])
        if after.cancelled() or after.exception() is not None or not after.result():
            return False  # the walk stops at the failure: the checkpoint must not pass the failed batch
    await asyncio.to_thread(engine.state.set_watermark, site, doctype, value, seen, kind)
    return True


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


def _log_listing_failure(engine: SyncEngine, doctype: str, site: str, exc: ConnectorError) -> None:
    log.warning("listing failed code=%s %s on %s: %s", exc.code, doctype, site, exc)
    with engine.db.write() as session:
        add_log(session, f"listing {doctype} on {site} failed; will resume from the checkpoint: {exc}",
                level="ERROR", site=site, doctype=doctype, outcome="failed", error_code=str(exc.code))


def record_failure(engine: SyncEngine, doctype: str, site: str, name: str, exc: BaseException) -> None:
    """Log the failure with its code and put the document on the durable queue for a retry with backoff."""
    code, retry_after = failure_code(exc)
    message = f"{doctype} {name} from {site}: {exc}"
    log.warning("sync failed code=%s %s", code, message)
    retry = engine.config.sync.retry
    now = utcnow()
    with engine.db.write() as session:
        item = queue.enqueue(session, kind=QueueKind.SYNC, site=site, doctype=doctype, name=name,
                             max_attempts=retry.max_attempts, now=now)
        # This run was the first attempt: the item waits out its backoff like any retried item.
        delay = max(queue.backoff_delay(1, retry.backoff_base_seconds, retry.backoff_max_seconds), retry_after or 0)
        item.status, item.attempts = QueueStatus.FAILED, max(item.attempts, 1)
        item.next_attempt_at = now + timedelta(seconds=delay)
        item.last_error, item.error_code = redact(message)[:4000], code
        session.add(item)
        add_log(session, message, level="ERROR", site=site, doctype=doctype, name=name, outcome="failed",
                error_code=code, queue_item_id=item.id)


# ============================================================================================ bulk full sync
#
# A full sync of a doctype without child tables reads the source in pages of whole documents (`fields=["*"]`
# returns every parent column; child tables are not in list results, §3), so it needs no per-document GET.
# Per batch: one state read, one read of the counterparts on the target, the creates as `insert_many` calls of at
# most 200 (their intents committed in one transaction before the first is sent), the updates as concurrent PUTs,
# and then the state and the log lines of the whole batch in one transaction. Anything unusual — a conflict, a
# change on the target, a link not mapped yet, a failed call, a possible echo — goes the per-document way
# (`SyncEngine.sync_document`), which decides exactly as before.


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
    cache: dict[str, bool] = engine.__dict__.setdefault("_bulk_eligible", {})
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
    checked: dict[tuple[str, str], asyncio.Future[bool]] = engine.__dict__.setdefault("_bulk_checked", {})
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
    full = await engine._fetch(policy, site, row["name"])
    listed = await engine._fetched(policy, site, row)
    same = full.doc is None or full.content_hash == listed.content_hash
    if not same:
        log.warning("bulk path off for %s on %s: a listed row differs from the document", doctype, site)
    return same


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
        lock = engine._lock(doctype, site, row["name"])
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
        workers = engine.batch_workers
        ran = await workers.run(doctype, site, mine, force_from, engine.fence) if workers and mine else None
        if ran is None:
            fallback += await _bulk_locked(engine, doctype, site, mine, summary, force_from=force_from,
                                           release=release)
        else:  # a worker process ran it (engine/batch_workers.py), under the locks this process holds
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
            canonical = engine._canonical(policy, site, row)
        except SyncFailed:
            out.append(None)
            continue
        text = docs.canonical_json(canonical)
        item = _Row(site, row["name"], row, canonical, docs.hash_of_json(text), text)
        body: dict[str, Any] | None = canonical
        if fields:
            mapper = engine._name_mapper(site, target)
            if any(mapper(dt, name) is None for dt, name in linked_names(row, fields)):
                body = None
            elif target != engine.pair[0]:
                body, missing = translate(canonical, fields, engine._name_mapper(engine.pair[0], target))
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
                    body = await self.engine._target_body(self.policy, source.canonical, self.target)
                    normal = docs.normalise(current.doc or {}, self.policy.exclude_fields)
                    payload = docs.to_write_payload(body, normal, expected_modified=current.modified)
                    answer = await connector.update(self.doctype, current.name or "", payload)
                    written = await self.engine._fetched(self.policy, self.target, answer)
                except Exception:  # stale, refused, a link missing: the per-document path decides again
                    return source.name
                self.done(record.record_id, source, _side_of(written), Outcome.UPDATED, 1, self.direction)
                return None

        results = await asyncio.gather(*(push(*item) for item in pushes))
        return fallback + [name for name in results if name is not None]


def _fetched_now(engine: SyncEngine, policy: DoctypePolicy, site: str, doc: dict[str, Any]) -> Fetched:
    canonical = engine._canonical(policy, site, doc)
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
