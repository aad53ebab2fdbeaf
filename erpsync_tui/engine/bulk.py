"""Many documents at once: full sync (resumable), incremental sync from watermarks.

The walk lists the source in pages and keeps the checkpoints; each batch is written by bulk_batch.py (or the
per-document path), in this process or in the batch processes of batch_pool.py. Reconciliation is reconcile.py.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine import deletes, renames
from erpsync_tui.engine.bulk_batch import _bulk_batch, _sync_batch
from erpsync_tui.engine.eligibility import _rows_are_documents, bulk_eligible
from erpsync_tui.engine.matching import MatchingFailed, pair_before_sync
from erpsync_tui.engine.summary import SyncSummary, _log_listing_failure, record_failure
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.logs import add_log

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")

Progress = Callable[[str, int], None]  # (what, documents done so far in this pass)


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
        except Exception as exc:
            await _failed(engine, doctype, site, name, exc, summary)
            settled = False
            continue
        settled = await _sync_one(engine, doctype, site, name, summary) and settled
    return settled


async def _sync_one(engine: SyncEngine, doctype: str, site: str, name: str, summary: SyncSummary) -> bool:
    """One document the per-document way, before the walk; False when it failed (recorded for a retry)."""
    try:
        summary.add(await engine.sync_document(doctype, site, name))
        return True
    except Exception as exc:  # recorded and retried from the queue, as in the walk
        await _failed(engine, doctype, site, name, exc, summary)
        return False


async def _failed(engine: SyncEngine, doctype: str, site: str, name: str, exc: Exception,
                  summary: SyncSummary) -> None:
    summary.failed += 1
    await asyncio.to_thread(record_failure, engine, doctype, site, name, exc)


async def _renamed_there(engine: SyncEngine, policy: DoctypePolicy, site: str, names: list[str]) -> bool:
    for name in names:
        fetched = await engine.fetch(policy, site, name)
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
            settled = await _sync_one(engine, doctype, source, name, summary) and settled
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
    pool = engine.batch_pool
    depth = max(BULK_BATCHES_IN_FLIGHT, 2 * pool.processes if pool and pool.usable else 0) if bulk else 1
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
