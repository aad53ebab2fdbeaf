"""Many documents at once: full sync (resumable), incremental sync from watermarks, reconciliation."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from time import perf_counter
from typing import Any

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine.sync import DocResult, Outcome, SyncEngine, failure_code
from erpsync_tui.secrets import redact
from erpsync_tui.store import queue
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueKind, QueueStatus, utcnow

log = logging.getLogger("erpsync.engine")

Progress = Callable[[str, int], None]  # (what, documents done so far in this pass)


@dataclass
class SyncSummary:
    processed: int = 0
    writes: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, result: DocResult) -> None:
        self.processed += 1
        self.writes += result.writes
        self.outcomes[str(result.outcome)] += 1

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
        for site in sources:
            if docname is not None:
                await _sync_batch(engine, doctype, site, [docname], summary, force_from=force, skip_known=False)
                continue
            await _walk(engine, doctype, site, "full", summary, limit=limit, force_from=force, progress=progress)
    summary.seconds = perf_counter() - started
    return summary


async def incremental_sync(engine: SyncEngine, *, doctypes: Sequence[str] | None = None) -> SyncSummary:
    """Documents modified since each site's stored watermark: the safety net under webhooks."""
    summary, started = SyncSummary(), perf_counter()
    for doctype in doctypes or engine.config.sync.doctypes:
        for site in engine.pair:
            await _walk(engine, doctype, site, "incremental", summary)
    summary.seconds = perf_counter() - started
    return summary


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
) -> None:
    """Page through a site's documents from the stored position, syncing in batches and saving the position."""
    state, batch_size = engine.state, engine.config.sync.batch_size
    value, seen = await asyncio.to_thread(state.watermark, site, doctype, kind)
    rows = engine.connectors[site].list_documents(
        doctype, fields=("name", "modified"), modified_since=value, page_size=max(batch_size, 100), limit=limit,
        seen_at_watermark=seen,
    )
    batch: list[dict[str, Any]] = []
    done = 0
    try:
        async for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                value, seen = await _finish_batch(engine, doctype, site, kind, batch, summary, force_from, value,
                                                  seen)
                done += len(batch)
                batch = []
                if progress:
                    progress(f"{doctype} from {site}", done)
    except ConnectorError as exc:
        # The listing itself failed: keep the checkpoint (the next run resumes there) and go on with the rest.
        summary.failed += 1
        await asyncio.to_thread(_log_listing_failure, engine, doctype, site, exc)
        return
    if batch:
        value, seen = await _finish_batch(engine, doctype, site, kind, batch, summary, force_from, value, seen)
        done += len(batch)
        if progress:
            progress(f"{doctype} from {site}", done)
    if kind == "full" and limit is None:
        await asyncio.to_thread(state.set_watermark, site, doctype, None, [], kind)  # finished: start over next time


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
) -> tuple[str | None, list[str]]:
    names = [row["name"] for row in batch]
    modified = {row["name"]: row.get("modified") for row in batch}
    await _sync_batch(engine, doctype, site, names, summary, force_from=force_from, modified=modified)
    # The next position: the last `modified` handled, with every name already handled at exactly that value.
    last = batch[-1].get("modified")
    at_last = [row["name"] for row in batch if row.get("modified") == last]
    new_seen = (seen if last == value else []) + at_last
    await asyncio.to_thread(engine.state.set_watermark, site, doctype, last, new_seen, kind)
    return last, new_seen


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


# ============================================================================================ reconcile


@dataclass
class Difference:
    doctype: str
    kind: str  # missing_on:<site> | fields_differ
    names: dict[str, str]
    fields: list[str] = field(default_factory=list)


@dataclass
class ReconcileReport:
    doctype: str
    counts: dict[str, int]
    differences: list[Difference]

    def as_dict(self) -> dict[str, Any]:
        return {"doctype": self.doctype, "counts": self.counts, "differences": [asdict(d) for d in self.differences]}

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["doctype", "kind", *(f"name_{s}" for s in self.counts), "fields"])
        for diff in self.differences:
            writer.writerow([diff.doctype, diff.kind, *(diff.names.get(s, "") for s in self.counts),
                             " ".join(diff.fields)])
        return out.getvalue()


async def reconcile(engine: SyncEngine, doctype: str) -> ReconcileReport:
    """Compare a doctype across both sites, field by field, and report; writes nothing anywhere."""
    policy = engine.config.policy_for(doctype)
    listed: dict[str, list[str]] = {}
    for site in engine.pair:
        listed[site] = [row["name"] async for row in engine.connectors[site].list_documents(doctype, fields=("name",))]
    a, b = engine.pair
    differences: list[Difference] = []
    matched_b: set[str] = set()
    for name in listed[a]:
        counterpart = await asyncio.to_thread(engine.state.translate_name, doctype, a, name, b)
        if counterpart is None or counterpart not in set(listed[b]):
            differences.append(Difference(doctype, f"missing_on:{b}", {a: name}))
            continue
        matched_b.add(counterpart)
        fa, fb = await asyncio.gather(engine._fetch(policy, a, name), engine._fetch(policy, b, counterpart))
        if fa.content_hash != fb.content_hash:
            fields = sorted(k for k in fa.canonical.keys() | fb.canonical.keys()
                            if fa.canonical.get(k) != fb.canonical.get(k))
            differences.append(Difference(doctype, "fields_differ", {a: name, b: counterpart}, fields))
    for name in listed[b]:
        if name not in matched_b:
            differences.append(Difference(doctype, f"missing_on:{a}", {b: name}))
    counts = {site: len(names) for site, names in listed.items()}
    return ReconcileReport(doctype, counts, differences)
