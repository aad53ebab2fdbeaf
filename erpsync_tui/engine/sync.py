"""Bidirectional sync of documents between the two sites of `sync.between`.

Per document: fetch both sides, bring each into canonical form (normalised, links expressed in the first
site's names), hash, and compare with the hashes recorded at the last sync. One side changed → push it.
Both changed → merge disjoint edits against the stored base, else apply the doctype's policy, or open a
conflict (`manual`) and write nothing. After every write the new hashes are recorded, so the webhook the
write itself causes finds nothing changed: no sync loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from erpsync_tui.config import AppConfig, DoctypePolicy
from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    CircuitOpen,
    Connector,
    ConnectorError,
    DuplicateEntry,
    LinkValidationFailed,
    PermissionDenied,
    RateLimited,
    TimestampMismatch,
)
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine import lifecycle, matching, renames
from erpsync_tui.engine.links import link_fields, linked_names, translate
from erpsync_tui.engine.matching import Rule
from erpsync_tui.engine.state import AttemptNoted, PendingCreate, RecordView, Side, SyncState
from erpsync_tui.errors import ErpSyncError, ErrorCode
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import RecordStatus

if TYPE_CHECKING:
    from erpsync_tui.engine.batch_workers import BatchWorkers

log = logging.getLogger("erpsync.engine")

MAX_STALE_RETRIES = 3  # refetch-and-decide rounds after a TimestampMismatch before giving up
MAX_LINK_DEPTH = 4  # how deep "sync the linked document first" may recurse
CLOCK_SKEW = timedelta(minutes=2)  # tolerated difference between our clock and a site's `creation` stamps


# Frappe document events that mean "saved": the webhook's `modified` is then the saved version's.
SAVE_EVENTS = frozenset({"after_insert", "on_update", "on_change", "on_submit", "on_cancel",
                         "on_update_after_submit"})


class Outcome(StrEnum):
    SKIPPED = "skipped"  # nothing to do (also: the echo of our own write)
    CREATED = "created"
    UPDATED = "updated"
    MERGED = "merged"
    POLICY = "resolved_by_policy"
    CONFLICT = "conflict"
    RESOLVED = "resolved"
    DELETED = "deleted"
    ADOPTED = "adopted"  # a lost create found on the target, or a document both sites already had
    AMBIGUOUS = "ambiguous"  # matches 2+ documents on the other site: neither paired nor created (ERP009)
    NOT_FOUND = "not_found"


@dataclass(slots=True)
class DocResult:
    doctype: str
    site: str
    name: str
    outcome: Outcome
    writes: int = 0
    direction: str | None = None
    detail: str = ""


class SyncFailed(ErpSyncError):
    """A document could not be synced now; the queue will retry it."""

    def __init__(self, message: str, *, code: ErrorCode, retry_after: float | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, code=code, fix=fix)
        self.retry_after = retry_after


@dataclass(slots=True)
class Fetched:
    site: str
    doc: dict[str, Any] | None
    canonical: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def modified(self) -> str | None:
        return self.doc.get("modified") if self.doc else None

    @property
    def name(self) -> str | None:
        return self.doc.get("name") if self.doc else None


class SyncEngine:
    def __init__(
        self,
        config: AppConfig,
        db: Database,
        connectors: Mapping[str, Connector],
        *,
        actor: str = "engine",
        fence: str | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.state = SyncState(db)
        self.connectors = dict(connectors)
        self.pair: tuple[str, str] = config.pair
        self.actor = actor
        self.fence = fence  # the engine lease holder we run under: no create is sent once it is lost
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self.echoes_skipped = 0  # webhooks that were the echo of our own write (settled without a request)
        self.batch_workers: BatchWorkers | None = None  # full-sync batches in worker processes (sync.workers)
        self._users: dict[str, str] = {}  # site → the user our credentials log in as

    # ==================================================================================== public API

    async def sync_document(
        self, doctype: str, site: str, name: str, *, force_from: str | None = None, depth: int = 0
    ) -> DocResult:
        """Bring one document (named `name` on `site`) in sync on both sites."""
        self._check_site(site)
        async with self._lock(doctype, site, name):
            for _ in range(MAX_STALE_RETRIES):
                try:
                    return await self._sync_once(doctype, site, name, force_from=force_from, depth=depth)
                except TimestampMismatch:
                    # Someone wrote between our read and our write: read again and decide again.
                    await self._log("stale write: refetching", "WARNING", doctype, site, name, outcome="retry")
            raise SyncFailed(
                f"{doctype} {name}: still changing after {MAX_STALE_RETRIES} attempts", code=ErrorCode.VALIDATION
            )

    async def skip_known_version(
        self, doctype: str, site: str, name: str, *, modified: str | None, event: str | None = None
    ) -> DocResult | None:
        """A webhook naming exactly the version of `name` we last synced needs no fetch: a skipped result.

        That is the echo every write of ours causes (half of all webhook traffic), or an event handled
        already. `modified` changes with every save, so an equal one means nothing changed since. A delete
        keeps it unchanged, so only events that name a save qualify; an event without a name, or any other,
        takes the full path. None: sync it as usual.
        """
        if not modified or event not in SAVE_EVENTS:
            return None
        known = await self._run(self.state.known_modified, site, doctype, [name])
        if known.get(name) != modified:
            return None
        # Half of all webhook traffic: counted (status, /metrics, the lease the console reads), logged at DEBUG
        # only and not stored as a log row — it would bury every line an operator needs.
        self.echoes_skipped += 1
        log.debug("skipped %s %s on %s: the webhook names the version last synced (our own write's echo)",
                  doctype, name, site)
        return DocResult(doctype, site, name, Outcome.SKIPPED,
                         detail="the webhook names the version last synced (our own write's echo)")

    def other(self, site: str) -> str:
        return self.pair[1] if site == self.pair[0] else self.pair[0]

    # ==================================================================================== the decision

    async def _sync_once(self, doctype: str, site: str, name: str, *, force_from: str | None, depth: int) -> DocResult:
        policy = self.config.policy_for(doctype)
        record = await self._run(self.state.find, site, doctype, name)
        source = await self._fetch(policy, site, name)
        if record is not None and record.status == RecordStatus.AMBIGUOUS:
            # Left for the operator; a full sync's matching pass (or `erpsync-tui match`) looks at it again.
            return await self._done(DocResult(doctype, site, name, Outcome.AMBIGUOUS,
                                              detail="matches several documents on the other site; not created"))
        if record is None:
            if source.doc is None:
                return await self._done(DocResult(doctype, site, name, Outcome.NOT_FOUND))
            return await self._create(policy, source, depth=depth)
        target_site = self.other(site)
        target_side = record.sides.get(target_site)
        if target_side is None:
            return await self._one_sided(policy, record, source, depth=depth)
        target = await self._fetch(policy, target_site, target_side.name)
        fetched = {site: source, target_site: target}
        if source.doc is None or target.doc is None:
            return await self._deleted(policy, record, fetched, depth=depth)
        return await self._compare(policy, record, fetched, force_from=force_from, depth=depth)

    async def _compare(
        self,
        policy: DoctypePolicy,
        record: RecordView,
        fetched: dict[str, Fetched],
        *,
        force_from: str | None,
        depth: int,
    ) -> DocResult:
        waiting = await lifecycle.waiting_on_refusal(self, record, fetched)
        if waiting is not None:
            return waiting
        try:
            return await self._compare_versions(policy, record, fetched, force_from=force_from, depth=depth)
        except lifecycle.WriteRefused as exc:  # submitted/cancelled there: retrying cannot help (ERP008)
            return await lifecycle.refused(self, record, fetched, exc)

    async def _compare_versions(
        self,
        policy: DoctypePolicy,
        record: RecordView,
        fetched: dict[str, Fetched],
        *,
        force_from: str | None,
        depth: int,
    ) -> DocResult:
        a, b = self.pair
        fa, fb = fetched[a], fetched[b]
        if fa.content_hash == fb.content_hash:
            await self._record_synced(record, fa.canonical, fa, fb)
            return await self._done(self._result(record, fa, Outcome.SKIPPED))
        if force_from is not None:
            return await self._push(policy, record, fetched[force_from], fetched[self.other(force_from)], depth)
        changed = {s: fetched[s].content_hash != _hash_of(record, s) for s in self.pair}
        if changed[a] and not changed[b]:
            return await self._push(policy, record, fa, fb, depth)
        if changed[b] and not changed[a]:
            return await self._push(policy, record, fb, fa, depth)
        return await self._both_changed(policy, record, fa, fb, depth)

    async def _both_changed(
        self, policy: DoctypePolicy, record: RecordView, fa: Fetched, fb: Fetched, depth: int
    ) -> DocResult:
        forward = lifecycle.forward_only(fa, fb)
        if forward is not None:  # only docstatus differs: the later state wins (Frappe moves forward only)
            return await self._push(policy, record, forward[0], forward[1], depth)
        merge = docs.three_way_merge(record.base, fa.canonical, fb.canonical)
        if policy.field_level_merge and record.base is not None and merge.merged is not None:
            writes, sides = await self._write_both(policy, record, merge.merged, fa, fb, depth)
            await self._record_synced(record, merge.merged, *sides)
            return await self._done(self._result(record, fa, Outcome.MERGED, writes=writes, direction="merge"))
        if policy.conflict_resolution == "manual":
            return await self._open_conflict(record, fa, fb, merge.conflicting_fields or _differing(fa, fb))
        winner = docs.decide(policy.conflict_resolution, sides=self.pair, modified=self._modified_times(fa, fb))
        source, target = (fa, fb) if winner == fa.site else (fb, fa)
        result = await self._push(policy, record, source, target, depth)
        result.outcome = Outcome.POLICY
        result.detail = f"{policy.conflict_resolution}: {winner} wins ({', '.join(merge.conflicting_fields)})"
        await self._log(result.detail, "WARNING", record.doctype, source.site, source.name or "", outcome="policy")
        return result

    # ==================================================================================== writes

    async def _push(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, target: Fetched, depth: int
    ) -> DocResult:
        source = await self._ensure_links(policy, source, target.site, depth)
        written = await self._write(policy, record, source.canonical, target, depth)
        await self._record_synced(record, source.canonical, source, written)
        outcome = Outcome.UPDATED
        change = lifecycle.describe_transition(lifecycle.docstatus_of(target.doc), lifecycle.docstatus_of(source.doc))
        return await self._done(
            self._result(record, source, outcome, writes=1, direction=f"{source.site}→{target.site}", detail=change)
        )

    async def _write(
        self, policy: DoctypePolicy, record: RecordView, canonical: dict[str, Any], target: Fetched, depth: int
    ) -> Fetched:
        """PUT `canonical` onto the target, sending the `modified` we read (a stale write fails, never clobbers)."""
        assert target.doc is not None
        body = await self._target_body(policy, canonical, target.site)
        current = docs.normalise(target.doc, policy.exclude_fields)
        payload = docs.to_write_payload(body, current, expected_modified=target.modified)
        answer = await lifecycle.write_in_order(self, policy, target, payload, depth)  # submit/cancel in order
        return await self._fetched(policy, target.site, answer)

    async def _create(self, policy: DoctypePolicy, source: Fetched, *, depth: int) -> DocResult:
        doctype, target_site = policy.doctype, self.other(source.site)
        echo = await self._run(self.state.creating_with_hash, doctype, source.site, source.content_hash)
        if echo is not None:
            # Our own create (sent with exactly this content), reported before we recorded its name.
            origin = echo.sides[self.other(source.site)]
            await self._run(self.state.mark_synced, echo.record_id, doctype, source.canonical,
                            source.content_hash, [origin, _side(source)])
            return await self._done(DocResult(doctype, source.site, source.name or "", Outcome.ADOPTED,
                                              detail="our own create, whose answer was lost or not yet recorded"))
        # A tracked document under a new name (rename_doc): follow it, never re-create. Asked before the lost-create
        # search, which would otherwise take a renamed copy of ours for the copy of another pending create.
        renamed = await renames.renamed_from(self, doctype, source)
        if renamed is not None and await renames.move_names(self, renamed[1], doctype, source.site, renamed[0],
                                                            source.name or ""):
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        # The matching rules before the likeness of a lost create: after a restore, a copy our user made for one
        # document can resemble another document's pending create (its name is what tells them apart).
        matched = await self._match_on_target(policy, source)
        if matched is not None:
            return await self._settle_match(policy, source, matched, depth)
        owner = await self._own_create_awaiting_its_name(policy, source)
        if owner is not None:
            return await self._pair_lost_create(policy, owner, source, depth)
        if await self._retried_unfinished_match(policy, source, depth):
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth + 1)
        record = await self._run(self.state.begin_create, doctype, _side(source), source.canonical,
                                 source.content_hash)
        if target_site in record.sides:  # another task finished this create meanwhile
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        return await self._create_on_target(policy, record, source, depth)

    async def _retried_unfinished_match(self, policy: DoctypePolicy, source: Fetched, depth: int) -> bool:
        """Retry first the unfinished creates (lost answers) on the other site that this unknown document of ours
        matches by the rules; True when there were any (then decide again).

        It may be such a create's copy, which likeness cannot tell after a restore (`owner_of_copy`): creating it
        back would leave the retry to make a second copy — a duplicate on each site. The retry pairs the two.
        """
        doctype, target_site = policy.doctype, self.other(source.site)
        assert source.doc is not None
        pending = await self._run(self.state.pending_creates, doctype, source.site)
        if not any(list(p.record.sides) == [target_site] for p in pending) \
                or not await self._created_by_us(source.site, source.doc):
            return False  # no create of ours aimed here is unfinished, or this is no copy of ours
        matched = await self._match_on_target(policy, source, unfinished=True)
        if matched is None:
            return False
        for name in matched[1]:
            lock = self._lock(doctype, target_site, name)
            if lock.locked() or depth >= 4:  # being synced right now (waiting could deadlock): the queue retries us
                raise SyncFailed(f"{doctype} {source.name}: matches {name} on {target_site}, whose unfinished create "
                                 "must be retried first; trying again after it", code=ErrorCode.RECONCILIATION)
            async with lock:
                await self._sync_once(doctype, target_site, name, force_from=None, depth=depth + 1)
        return True

    async def _match_on_target(self, policy: DoctypePolicy, source: Fetched, *,
                               unfinished: bool = False) -> tuple[Rule, list[str]] | None:
        """The unpaired documents on the other site this one matches by the doctype's rules, before creating it.

        Rules in order; the first under which any candidate exists decides: (rule, candidate names). Asked with
        list requests filtered by the rule's fields (`like`: case-insensitive on the site), confirmed by the
        normalised keys; a rule whose link field is not mapped yet does not apply. Also counted the other way: a
        candidate that matches several documents here is ambiguous too.

        `unfinished`: the candidates are instead documents whose record is an unfinished create from that site
        (one-sided, `creating`).
        """
        rules = matching.rules_for(policy)
        if not rules or source.doc is None:
            return None
        keys = await self._run(self._keys_of, policy, source.site, source.doc, rules)
        target_site = self.other(source.site)
        for index, rule in enumerate(rules):
            if keys[index] is None:
                continue
            there = await self._candidates(policy, target_site, rules, index, keys[index], source,
                                           unfinished=unfinished)
            if not there:
                continue
            if unfinished:
                return rule, there
            here = await self._candidates(policy, source.site, rules, index, keys[index], source)
            return rule, there if len(here) <= 1 else there + [n for n in here if n != source.name]
        return None

    def _keys_of(self, policy: DoctypePolicy, site: str, doc: dict[str, Any],
                 rules: tuple[Rule, ...]) -> list[matching.Key | None]:
        links = link_fields(policy.doctype, policy.links)
        to_first = None if site == self.pair[0] else (
            lambda dt, n: self.state.translate_name(dt, site, n, self.pair[0]))
        return matching.match_keys(rules, doc, links, to_first)

    async def _candidates(self, policy: DoctypePolicy, site: str, rules: tuple[Rule, ...], index: int,
                          key: matching.Key, source: Fetched, *, unfinished: bool = False) -> list[str]:
        """Unpaired documents on `site` whose key under rule `index` is `key` (one filtered list request);
        `unfinished`: those whose record is an unfinished create from `site` instead."""
        assert source.doc is not None
        links = link_fields(policy.doctype, policy.links)
        filters: list[list[Any]] = []
        for fieldname in rules[index]:
            raw = source.doc.get(fieldname)
            if fieldname in links and site != source.site:
                raw = await self._run(self.state.translate_name, links[fieldname], source.site, raw, site)
                if raw is None:
                    return []
            filters.append([fieldname, "like", raw.strip()] if isinstance(raw, str) else [fieldname, "=", raw])
        fields = matching.rule_fields([rules[index]], links)  # with the lineage: an amendment's identity
        rows = [row async for row in self.connectors[site].list_documents(
            policy.doctype, fields=("name", "modified", *fields), filters=filters)]
        alike = [row["name"] for row in rows
                 if (await self._run(self._keys_of, policy, site, row, rules))[index] == key]
        if unfinished:
            records = await self._run(self.state.find_many, site, policy.doctype, alike)
            return [name for name, record in records.items()
                    if record.status == RecordStatus.CREATING and list(record.sides) == [site]]
        open_names = await self._run(self.state.unpaired_names, site, policy.doctype, alike)
        return [name for name in alike if name in open_names]

    async def _settle_match(self, policy: DoctypePolicy, source: Fetched, matched: tuple[Rule, list[str]],
                            depth: int) -> DocResult:
        """One candidate: pair without a base, then compare (policy/manual for what differs). More: ambiguous."""
        rule, names = matched
        doctype, target_site = policy.doctype, self.other(source.site)
        if len(names) > 1:
            ambiguity = matching.Ambiguity(source.site, source.name or "", names, list(rule))
            await self._run(self.state.record_identity, doctype, [], [ambiguity], {})
            return await self._done(DocResult(doctype, source.site, source.name or "", Outcome.AMBIGUOUS,
                                              detail=f"matches {len(names)} documents on {target_site} by "
                                                     f"{'+'.join(rule)}: not paired, not created (ERP009)"))
        pairing = matching.Pairing({source.site: source.name or "", target_site: names[0]}, list(rule))
        if not await self._run(self.state.record_identity, doctype, [pairing], [], {}):
            # One of the two was paired meanwhile by another task: decide again from what is recorded now.
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        record = await self._run(self.state.find, source.site, doctype, source.name or "")
        assert record is not None
        target = await self._fetch(policy, target_site, names[0])
        if target.doc is None:  # deleted since it was listed: the record is one-sided; the usual path decides
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        await self._log(f"matched {doctype} {source.name} on {source.site} with {names[0]} on {target_site} by "
                        f"{'+'.join(rule)}: both sites already held it", "INFO", doctype, source.site,
                        source.name or "", outcome="paired")
        result = await self._compare(policy, record, {source.site: source, target_site: target}, force_from=None,
                                     depth=depth)
        if result.outcome == Outcome.SKIPPED:
            result.outcome = Outcome.ADOPTED
        return result

    async def _settle_match_of_record(self, policy: DoctypePolicy, record: RecordView, source: Fetched,
                                      matched: tuple[Rule, list[str]], depth: int) -> DocResult:
        """`_settle_match` for a source that has a record already (one-sided): link that record, no base."""
        rule, names = matched
        doctype, target_site = policy.doctype, self.other(source.site)
        if len(names) > 1:
            await self._run(self.state.mark_status, record.record_id, RecordStatus.AMBIGUOUS,
                            f"matches {len(names)} documents on {target_site} by {'+'.join(rule)}: "
                            f"{', '.join(names[:5])}", str(ErrorCode.RECONCILIATION))
            return await self._done(DocResult(doctype, source.site, source.name or "", Outcome.AMBIGUOUS,
                                              detail=f"matches {len(names)} documents on {target_site}; not created"))
        other = await self._run(self.state.find, target_site, doctype, names[0])
        if other is not None and not (other.status == RecordStatus.AMBIGUOUS and list(other.sides) == [target_site]
                                      and await self._run(self.state.absorb_half_record, record.record_id,
                                                          other.record_id, target_site)):
            # Paired meanwhile by another task: decide again from what is recorded now.
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        target = await self._fetch(policy, target_site, names[0])
        if target.doc is None:
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)
        await self._log(f"matched {doctype} {source.name} on {source.site} with {names[0]} on {target_site} by "
                        f"{'+'.join(rule)} instead of creating it", "INFO", doctype, source.site, source.name or "",
                        outcome="paired")
        try:
            return await self._link_without_base(policy, record, source, target, depth)
        except IntegrityError:  # its name row appeared meanwhile: look again
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth)

    async def _own_create_awaiting_its_name(self, policy: DoctypePolicy, doc: Fetched) -> RecordView | None:
        """The pending create this unknown document came from, if it is ours though edited since we sent it.

        Our API user is its owner and creates aimed at its site still wait for their names: creating it back
        would duplicate it on both sites. Which create it came from is `owner_of_copy`'s answer — the same one
        the create's own retry reaches, so neither waits for the other.
        """
        assert doc.doc is not None
        if not await self._created_by_us(doc.site, doc.doc):
            return None
        pending = await self._run(self.state.pending_creates, policy.doctype, doc.site)
        epoch = await self._run(self.state.identity_epoch)
        owner = owner_of_copy(doc, pending, self._zone(doc.site), matching.rules_for(policy), epoch)
        return owner.record if owner is not None else None

    async def _pair_lost_create(
        self, policy: DoctypePolicy, record: RecordView, created: Fetched, depth: int
    ) -> DocResult:
        """Link a record with the document its lost create made (edited since), then settle the content.

        When every insert sent carried one content, that is the common ancestor: each side's edits since are
        changes against it (merged, or policy/manual for a field both changed). Otherwise neither side gets a
        synced hash and there is no base: both count as changed, so policy/manual decide every field that
        differs, exactly as for two documents that already existed on both sites.
        """
        origin_site = self.other(created.site)
        await self._log(f"adopted {created.name} on {created.site}: our own create whose answer was lost, edited "
                        "since", "WARNING", record.doctype, created.site, created.name or "", outcome="adopted")
        origin = record.sides[origin_site]
        source = await self._fetch(policy, origin_site, origin.name)
        if source.doc is None:  # deleted meanwhile: record the pair, then the delete is handled as configured
            await self._run(self.state.mark_synced, record.record_id, record.doctype, created.canonical,
                            created.content_hash, [origin, Side(created.site, created.name or "", None,
                                                                created.modified)])
            paired = await self._run(self.state.view, record.record_id)
            assert paired is not None
            return await self._deleted(policy, paired, {origin_site: source, created.site: created}, depth=depth)
        sent = await self._run(self._only_payload_sent, record, created.site)
        if sent is not None:
            return await self._link_with_sent_base(policy, record, source, created, sent, depth)
        return await self._link_without_base(policy, record, source, created, depth)

    def _only_payload_sent(self, record: RecordView, target_site: str) -> tuple[dict[str, Any], str] | None:
        """What every insert sent for `record` carried, when that was one content: the copy's real ancestor.

        The copy was made from it and the source held it when it was sent, so edits on either side since are
        changes against it (merged, not decided by policy). Several different contents: which one made the copy
        is not certain, so there is no base.
        """
        mine = [p for p in self.state.pending_creates(record.doctype, target_site)
                if p.record.record_id == record.record_id]
        if not mine or len(set(mine[0].hashes)) != 1:
            return None
        return mine[0].payloads[0], mine[0].hashes[0]

    async def _link_with_sent_base(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, created: Fetched,
        sent: tuple[dict[str, Any], str], depth: int,
    ) -> DocResult:
        """Pair a lost create's edited copy with its source, both descended from what was sent, then compare."""
        payload, payload_hash = sent
        sides = [Side(source.site, source.name or "", payload_hash, None),
                 Side(created.site, created.name or "", payload_hash, created.modified)]
        await self._run(self.state.mark_synced, record.record_id, record.doctype, payload, payload_hash, sides)
        view = await self._run(self.state.view, record.record_id)
        assert view is not None
        result = await self._compare(policy, view, {source.site: source, created.site: created}, force_from=None,
                                     depth=depth)
        if result.outcome == Outcome.SKIPPED:
            result.outcome = Outcome.ADOPTED
        return result

    async def _link_without_base(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, target: Fetched, depth: int
    ) -> DocResult:
        """Record `source` and `target` as one document's two copies, then settle every differing field.

        No base and no synced hash on either side: both count as changed, so merge/policy/manual (not arrival
        order) decide each field that differs. The missing base is stored as missing: the first side's content
        kept as a pretend base would let a later pass "merge" the other side over it.
        """
        unsynced = [Side(source.site, source.name or "", None, source.modified),
                    Side(target.site, target.name or "", None, target.modified)]
        await self._run(self.state.mark_synced, record.record_id, record.doctype, None, None, unsynced)
        refreshed = await self._run(self.state.view, record.record_id)
        assert refreshed is not None
        refreshed.base = None
        fetched = {source.site: source, target.site: target}
        result = await self._compare(policy, refreshed, fetched, force_from=None, depth=depth)
        if result.outcome == Outcome.SKIPPED:
            result.outcome = Outcome.ADOPTED
        return result

    async def _created_by_us(self, site: str, doc: dict[str, Any]) -> bool:
        user = await self._api_user(site)
        return user is not None and doc.get("owner") == user

    async def _api_user(self, site: str) -> str | None:
        """Who our credentials log in as on `site` (the `owner` of every document we create); cached."""
        if site not in self._users:
            try:
                self._users[site] = await self.connectors[site].whoami()
            except ConnectorError:
                return None  # unknown for now: asked again next time
        return self._users[site]

    async def _create_on_target(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, depth: int, *, match_first: bool = False
    ) -> DocResult:
        """Create the counterpart — unless a lost earlier attempt already did, or the target has it by name.

        `match_first`: look for it by the matching rules too (a record that was one-sided for a while — an
        unfinished create from a restored database, a delete not propagated — may have a counterpart by now that
        no attempt of ours made).
        """
        target_site = self.other(source.site)
        created, exact = await self._find_lost_create(policy, record, target_site)
        if created is not None and not exact:
            return await self._pair_lost_create(policy, record, created, depth)
        if created is None and match_first:
            matched = await self._match_on_target(policy, source)
            if matched is not None:
                return await self._settle_match_of_record(policy, record, source, matched, depth)
        if created is not None and created.content_hash != source.content_hash:
            # Found by what we sent, but the source changed since: what we sent is the base both sides share.
            sent = Side(source.site, source.name or "", created.content_hash, None)
            await self._run(self.state.mark_synced, record.record_id, record.doctype, created.canonical,
                            created.content_hash, [sent, _side(created)])
            view = await self._run(self.state.view, record.record_id)
            assert view is not None
            result = await self._compare(policy, view, {source.site: source, target_site: created}, force_from=None,
                                         depth=depth)
            result.detail = f"adopted our lost create {created.name}, then: {result.outcome}"
            return result
        outcome = Outcome.ADOPTED if created is not None else Outcome.CREATED
        if created is None:
            inserted = await self._insert(policy, record, source, target_site, depth)
            if inserted is None:  # another task paired this record meanwhile: look again, don't insert
                return await self._sync_once(record.doctype, source.site, source.name or "", force_from=None,
                                             depth=depth)
            source, created = inserted
            if created.doc is None:  # a document with this natural name already exists there: adopt it
                return await self._adopt_existing(policy, record, source, target_site, depth)
        await self._record_synced(record, source.canonical, source, created)
        amended = (created.doc or {}).get("amended_from")
        return await self._done(self._result(record, source, outcome, writes=int(outcome == Outcome.CREATED),
                                             direction=f"{source.site}→{target_site}",
                                             detail=f"amended from {amended}" if amended else ""))

    async def _insert(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, target_site: str, depth: int
    ) -> tuple[Fetched, Fetched] | None:
        """Create the source document on the target; (source re-read with its links mapped, the created doc).

        None when the record was paired meanwhile by another task (nothing sent).
        """
        source = await lifecycle.sync_amended_original_first(self, policy, source, depth)
        source = await self._ensure_links(policy, source, target_site, depth)
        body = await self._target_body(policy, source.canonical, target_site)
        payload = docs.to_write_payload(body)
        noted = await self._run(self.state.note_attempt, record.record_id, record.doctype, target_site,
                                source.content_hash, source.canonical, fence=self.fence)
        if noted == AttemptNoted.ALREADY_PAIRED:
            return None
        if noted == AttemptNoted.LEASE_LOST:
            raise SyncFailed(f"{record.doctype} {source.name}: this engine no longer holds the engine lease; "
                             "not sending a create another engine may send too", code=ErrorCode.QUEUE)
        try:
            answer = await lifecycle.insert_in_order(self, policy, target_site, depth, payload)
        except DuplicateEntry:
            return source, Fetched(target_site, None)
        return source, await self._fetched(policy, target_site, answer)

    async def _find_lost_create(
        self, policy: DoctypePolicy, record: RecordView, target_site: str
    ) -> tuple[Fetched | None, bool]:
        """After a lost answer the document may exist on the target already: find it rather than repeat it.

        Returns (document, exact): exact when its content is exactly what one of our inserts sent; not exact
        when our API user created it after our first attempt and it was edited since — then it must resemble
        what we sent more than what any other pending create sent.
        """
        if not record.retrying:
            return None, False  # a first attempt: nothing can have been created yet (and searching is O(n))
        pending = await self._run(self.state.pending_creates, record.doctype, target_site)
        mine = next((p for p in pending if p.record.record_id == record.record_id), None)
        if mine is None:
            return None, False  # no insert was ever sent for it
        others = {h for p in pending if p is not mine for h in p.hashes}
        user = await self._api_user(target_site)
        zone = self._zone(target_site)
        # Only a document stamped after our first attempt (allowing for clock skew) can be its copy.
        filters: list[list[Any]] = [["creation", ">=",
                                     docs.format_frappe_timestamp(mine.first_sent - CLOCK_SKEW, zone)]]
        if user is not None:
            filters.append(["owner", "=", user])
        edited: list[tuple[float, timedelta, str, Fetched]] = []
        epoch = await self._run(self.state.identity_epoch)
        listed = [row["name"] async for row in self.connectors[target_site].list_documents(
            record.doctype, fields=("name", "modified"), filters=filters)]
        # One query for the lot: most of them are our copies already paired (someone else's counterpart).
        paired = await self._run(self.state.mapped_names, target_site, record.doctype, listed)
        # A copy of ours renamed since (rename_doc) is an older document under a new name, not this create's copy.
        paired |= await renames.renamed_in_batch(self, record.doctype, target_site,
                                                 [n for n in listed if n not in paired])
        for name in listed:
            if name in paired:
                continue
            candidate = await self._fetch(policy, target_site, name)
            if candidate.doc is None or candidate.content_hash in others:
                continue
            if candidate.content_hash in mine.hashes:
                return candidate, True
            if user is not None and owner_of_copy(candidate, pending, zone, matching.rules_for(policy),
                                                  epoch) is mine \
                    and not await self._match_on_target(policy, candidate):
                # (a copy that matches an unpaired document by the rules is that document's: e.g. one our user
                # created after the backup a restored database was taken from)
                created = _creation(candidate, zone)
                assert created is not None  # owner_of_copy found it
                edited.append((-_likeness(candidate.canonical, mine), _send_gap(created, mine),
                               candidate.name or "", candidate))
        # Two edited copies of ours both closest to this create: the most alike, then the one made when it was sent.
        edited.sort(key=lambda entry: entry[:3])
        return (edited[0][3], False) if edited else (None, False)

    async def _adopt_existing(
        self, policy: DoctypePolicy, record: RecordView, source: Fetched, target_site: str, depth: int
    ) -> DocResult:
        """Both sites hold a document of the same natural name (e.g. an Item code): link them, then compare."""
        existing = await self._fetch(policy, target_site, source.name or "")
        duplicate = SyncFailed(f"{record.doctype} {source.name}: {target_site} refused the create as a duplicate "
                               "of a document already paired with another one", code=ErrorCode.VALIDATION)
        if existing.doc is None:
            raise duplicate
        other = await self._run(self.state.find, target_site, record.doctype, existing.name)
        if other is not None and other.record_id != record.record_id:
            mine = other.sides.get(source.site)
            if mine is not None and mine.name == source.name:
                # Another task already paired exactly these two documents (and absorbed our half): re-read.
                return await self._sync_once(record.doctype, source.site, source.name or "", force_from=None,
                                             depth=depth)
            if list(other.sides) != [target_site]:
                raise duplicate  # a genuine duplicate: that document is already paired
            # The other site reported its half at the same moment: fold the two halves into one record.
            if not await self._run(self.state.absorb_half_record, record.record_id, other.record_id, target_site):
                return await self._sync_once(record.doctype, source.site, source.name or "", force_from=None,
                                             depth=depth)
        try:
            return await self._link_without_base(policy, record, source, existing, depth)
        except IntegrityError:
            if other is not None:
                raise
            # The other site's half record appeared after we looked (its task recorded its create intent in
            # between): our link, all rolled back, met its name row. Look again: now there is a half to absorb.
            return await self._sync_once(record.doctype, source.site, source.name or "", force_from=None,
                                         depth=depth)

    # ==================================================================================== deletes

    async def _deleted(
        self, policy: DoctypePolicy, record: RecordView, fetched: dict[str, Fetched], *, depth: int
    ) -> DocResult:
        gone = [f for f in fetched.values() if f.doc is None]
        if len(gone) == 2:
            await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED)
            return await self._done(DocResult(record.doctype, gone[0].site, record.sides[gone[0].site].name,
                                              Outcome.DELETED, detail="gone on both sites"))
        deleted, survivor = gone[0], next(f for f in fetched.values() if f.doc is not None)
        old_name = record.sides[deleted.site].name
        new_name = await renames.renamed_to(self, record.doctype, deleted.site, old_name)
        # renamed (rename_doc), not deleted: follow the name, never delete or re-create
        if new_name is not None and await renames.move_names(self, record, record.doctype, deleted.site, old_name,
                                                             new_name):
            return await self._sync_once(record.doctype, deleted.site, new_name, force_from=None, depth=depth)
        survivor_changed = survivor.content_hash != _hash_of(record, survivor.site)
        await self._run(self.state.forget_side, record.record_id, deleted.site)
        if not policy.propagate_deletes or survivor_changed:
            reason = "delete propagation is off" if not policy.propagate_deletes else "edited on the other site"
            await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED, reason)
            if survivor_changed and policy.propagate_deletes:
                # The survivor was edited after the delete: keep the edit and bring it back where it was deleted.
                view = await self._run(self.state.view, record.record_id)
                assert view is not None
                return await self._one_sided(policy, view, survivor, depth=depth)
            return await self._done(DocResult(record.doctype, deleted.site, record.sides[deleted.site].name,
                                              Outcome.SKIPPED, detail=f"delete not propagated: {reason}"))
        await self.connectors[survivor.site].delete(record.doctype, survivor.name or "")
        await self._run(self.state.forget_side, record.record_id, survivor.site)
        await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED)
        return await self._done(DocResult(record.doctype, deleted.site, record.sides[deleted.site].name,
                                          Outcome.DELETED, writes=1, direction=f"{deleted.site}→{survivor.site}"))

    async def _one_sided(self, policy: DoctypePolicy, record: RecordView, present: Fetched, *, depth: int) -> DocResult:
        """A record known on one site only: a delete not propagated, or an unfinished create."""
        if present.doc is None:
            return await self._done(DocResult(record.doctype, present.site, present.name or "", Outcome.NOT_FOUND))
        unchanged = present.content_hash == _hash_of(record, present.site)
        if record.status == RecordStatus.DELETED and unchanged:
            return await self._done(DocResult(record.doctype, present.site, present.name or "", Outcome.SKIPPED,
                                              detail="counterpart deleted; not re-creating an unchanged document"))
        retrying = record.status == RecordStatus.CREATING
        await self._run(self.state.mark_status, record.record_id, RecordStatus.CREATING)
        view = await self._run(self.state.view, record.record_id)
        assert view is not None
        view.retrying = retrying
        return await self._create_on_target(policy, view, present, depth, match_first=True)

    # ==================================================================================== conflicts

    async def _open_conflict(self, record: RecordView, fa: Fetched, fb: Fetched, fields: list[str]) -> DocResult:
        conflict_id = await self._run(
            self.state.open_conflict,
            record.record_id,
            record.doctype,
            {fa.site: fa.name or "", fb.site: fb.name or ""},
            {fa.site: fa.canonical, fb.site: fb.canonical},
            {fa.site: fa.modified or "", fb.site: fb.modified or ""},
            record.base,
            fields,
        )
        result = self._result(record, fa, Outcome.CONFLICT,
                              detail=f"conflict #{conflict_id} on {', '.join(fields)}; waiting for an operator")
        await self._log(result.detail, "WARNING", record.doctype, fa.site, fa.name or "", outcome="conflict",
                        code=ErrorCode.RECONCILIATION)
        return result

    async def resolve(
        self, record_id: int, choices: Mapping[str, docs.Choice], *, actor: str, take: str | None = None
    ) -> DocResult:
        """Write an operator's resolution to both sites (per-field choices, or one whole side)."""
        view = await self._run(self.state.view, record_id)
        if view is None or len(view.sides) != 2:
            raise SyncFailed(f"record {record_id} is not a document on both sites", code=ErrorCode.RECONCILIATION)
        policy = self.config.policy_for(view.doctype)
        fa, fb = await self._refetch_all(policy, view)
        if fa.doc is None or fb.doc is None:
            raise SyncFailed(f"{view.doctype}: deleted on a site meanwhile", code=ErrorCode.RECONCILIATION)
        by_site = {fa.site: fa, fb.site: fb}
        if take is not None:
            resolved = by_site[take].canonical
        else:
            named = {k: (self._side_label(v)) for k, v in choices.items()}
            resolved = docs.apply_resolution(view.base, fa.canonical, fb.canonical, named) if named else fa.canonical
        writes, sides = await self._write_both(policy, view, resolved, fa, fb, 0)
        await self._record_synced(view, resolved, *sides)
        await self._run(self.state.close_conflicts, record_id, {"take": take, "fields": dict(choices)}, actor)
        result = self._result(view, fa, Outcome.RESOLVED, writes=writes, direction="resolution",
                              detail=f"resolved by {actor}")
        return await self._done(result)

    def _side_label(self, choice: docs.Choice) -> docs.Choice:
        """apply_resolution speaks of "cloud"/"local" as the pair's first/second site."""
        if choice == self.pair[0]:
            return "cloud"
        if choice == self.pair[1]:
            return "local"
        return choice

    # ==================================================================================== links

    async def _ensure_links(self, policy: DoctypePolicy, source: Fetched, target_site: str, depth: int) -> Fetched:
        """Sync every linked document the target does not have yet, then re-read links in canonical form."""
        fields = link_fields(policy.doctype, policy.links)
        if not fields or source.doc is None:
            return source
        mapper = self._name_mapper(source.site, target_site)
        links = linked_names(source.doc, fields)
        mapped = await self._run(lambda: [mapper(dt, name) for dt, name in links])  # DB reads: off the loop
        missing = [link for link, name in zip(links, mapped, strict=True) if name is None]
        if not missing:
            if links and source.site != self.pair[0]:
                # Mapped now, perhaps not when `source` was read (its canonical form then kept the raw name, which
                # on the first site may be another document): translate again before anything is written.
                return await self._fetched(policy, source.site, source.doc)
            return source
        for link_doctype, name in missing:
            await self._sync_linked(link_doctype, source.site, name, depth)
        return await self._fetched(policy, source.site, source.doc)

    async def _target_body(
        self, policy: DoctypePolicy, canonical: dict[str, Any], target_site: str
    ) -> dict[str, Any]:
        """The canonical document (links in the first site's names) with links in the target's names."""
        fields = link_fields(policy.doctype, policy.links)
        if not fields or target_site == self.pair[0]:
            return canonical
        body, missing = await self._run(translate, canonical, fields, self._name_mapper(self.pair[0], target_site))
        if missing:
            raise SyncFailed(f"{policy.doctype}: linked documents missing on {target_site}: {missing}",
                             code=ErrorCode.FIELD_MAPPING, fix=missing_link_fix(missing, target_site))
        return body

    def _name_mapper(self, from_site: str, to_site: str) -> Callable[[str, str], str | None]:
        def mapper(link_doctype: str, name: str) -> str | None:
            return self.state.translate_name(link_doctype, from_site, name, to_site)

        return mapper

    async def _with_links(
        self, policy: DoctypePolicy, target_site: str, depth: int, call: Callable[..., Awaitable[dict[str, Any]]],
        *args: Any,
    ) -> dict[str, Any]:
        """Run a write; if the target says a linked document is missing, sync that one first and retry once."""
        try:
            return await call(*args)
        except LinkValidationFailed as exc:
            if not exc.link_doctype or not exc.link_name or depth >= MAX_LINK_DEPTH:
                raise
            source_site = self.other(target_site)
            source_name = await self._run(self.state.translate_name, exc.link_doctype, target_site,
                                          exc.link_name, source_site) or exc.link_name
            await self._sync_linked(exc.link_doctype, source_site, source_name, depth)
            return await call(*args)

    async def _sync_linked(self, doctype: str, site: str, name: str, depth: int) -> None:
        if depth >= MAX_LINK_DEPTH:
            raise SyncFailed(f"link chain deeper than {MAX_LINK_DEPTH} at {doctype} {name}",
                             code=ErrorCode.FIELD_MAPPING)
        await self._log(f"syncing linked {doctype} {name} first", "INFO", doctype, site, name, outcome="link")
        await self.sync_document(doctype, site, name, depth=depth + 1)

    # ==================================================================================== helpers

    async def _fetch(self, policy: DoctypePolicy, site: str, name: str) -> Fetched:
        doc = await self.connectors[site].get(policy.doctype, name)
        return await self._fetched(policy, site, doc)

    async def _fetched(self, policy: DoctypePolicy, site: str, doc: dict[str, Any] | None) -> Fetched:
        if doc is None:
            return Fetched(site, None)
        if link_fields(policy.doctype, policy.links) and site != self.pair[0]:
            canonical = await self._run(self._canonical, policy, site, doc)  # link translation reads the DB
        else:
            canonical = self._canonical(policy, site, doc)
        return Fetched(site, doc, canonical, docs.content_hash(canonical))

    def _canonical(self, policy: DoctypePolicy, site: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Normalised, with link values in the pair's first site's names (so both sides compare equal)."""
        try:
            normal = docs.normalise(doc, policy.exclude_fields)
        except (ValueError, TypeError) as exc:
            raise SyncFailed(f"{policy.doctype} {doc.get('name')}: cannot normalise: {exc}",
                             code=ErrorCode.TRANSFORMATION) from exc
        fields = link_fields(policy.doctype, policy.links)
        if not fields or site == self.pair[0]:
            return normal
        translated, _missing = translate(normal, fields, self._name_mapper(site, self.pair[0]))
        return translated  # unmapped links keep their raw value until their document is synced

    async def _write_both(
        self, policy: DoctypePolicy, record: RecordView, content: dict[str, Any], fa: Fetched, fb: Fetched, depth: int
    ) -> tuple[int, list[Fetched]]:
        """Write `content` to each side that differs: (writes, each side as our write left it or as we read it).

        Those are what gets recorded as synced — never a fresh read, which could carry an edit made just after
        our write and so record it as synced without it ever reaching the other site.
        """
        wanted = docs.content_hash(content)
        sides: list[Fetched] = []
        for target in (fa, fb):
            if target.content_hash != wanted:
                target = await self._write(policy, record, content, target, depth)
            sides.append(target)
        return sum(1 for before, after in zip((fa, fb), sides, strict=True) if after is not before), sides

    async def _refetch_all(self, policy: DoctypePolicy, record: RecordView) -> tuple[Fetched, Fetched]:
        a, b = self.pair
        fa, fb = await asyncio.gather(
            self._fetch(policy, a, record.sides[a].name), self._fetch(policy, b, record.sides[b].name)
        )
        return fa, fb

    async def _record_synced(self, record: RecordView, base: dict[str, Any], *fetched: Fetched) -> None:
        sides = [_side(f) for f in fetched if f.doc is not None]
        await self._run(self.state.mark_synced, record.record_id, record.doctype, base, docs.content_hash(base),
                        sides)

    def _modified_times(self, fa: Fetched, fb: Fetched) -> dict[str, Any]:
        return {
            f.site: docs.parse_frappe_timestamp(str(f.modified), self._zone(f.site))
            for f in (fa, fb)
        }

    def _zone(self, site: str) -> str:
        return self.config.sites[site].timezone

    def _result(self, record: RecordView, source: Fetched, outcome: Outcome, *, writes: int = 0,
                direction: str | None = None, detail: str = "") -> DocResult:
        return DocResult(record.doctype, source.site, source.name or "", outcome, writes, direction, detail)

    async def _done(self, result: DocResult) -> DocResult:
        level = "WARNING" if result.outcome in (Outcome.CONFLICT, Outcome.POLICY) else "INFO"
        if result.outcome not in (Outcome.CONFLICT,):  # conflicts were logged with their code already
            message = f"{result.outcome}: {result.doctype} {result.name}" + (f" — {result.detail}" if result.detail
                                                                              else "")
            await self._log(message, level, result.doctype, result.site, result.name, outcome=result.outcome,
                            direction=result.direction)
        return result

    async def _log(self, message: str, level: str, doctype: str, site: str, name: str, *,
                   outcome: str | None = None, direction: str | None = None, code: str | None = None) -> None:
        await self._run(self.state.log, message, level=level, site=site, doctype=doctype, name=name,
                        outcome=outcome, direction=direction, error_code=code)

    def _lock(self, doctype: str, site: str, name: str) -> asyncio.Lock:
        key = (doctype, site, name)
        lock = self._locks.get(key)
        if lock is None:  # built only when missing: the bulk path asks for one per listed document
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _check_site(self, site: str) -> None:
        if site not in self.pair:
            raise SyncFailed(f"site {site!r} is not one of {self.pair}", code=ErrorCode.FIELD_MAPPING)

    @staticmethod
    async def _run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)


def missing_link_fix(missing: Any, target_site: str) -> str:
    """ERP003 for a link: the cause is a linked document not yet synced, not a field mapping."""
    return (f"A linked document ({missing}) is not on {target_site} yet: sync its doctype first (it must be in "
            "sync.doctypes, listed before this one, e.g. `erpsync-tui sync --doctype <that doctype>`), then "
            "`erpsync-tui retry --code ERP003`.")


def is_site_outage(exc: BaseException) -> bool:
    """The site refused us, not this document (circuit open, rate limited, key refused — 401 — or a role
    missing on the doctype — 403): the item waits with its attempts kept; dead-lettering it would not help."""
    return isinstance(exc, CircuitOpen | RateLimited | AuthenticationFailed | PermissionDenied)


def _hash_of(record: RecordView, site: str) -> str | None:
    side = record.sides.get(site)
    return side.content_hash if side else None


def _side(fetched: Fetched) -> Side:
    return Side(fetched.site, fetched.name or "", fetched.content_hash, fetched.modified)


MIN_LIKENESS = 0.5  # an edited copy keeps most of what we sent; less alike than this, it is not ours


def owner_of_copy(copy: Fetched, pending: list[PendingCreate], zone: str,
                  rules: tuple[Rule, ...] = (), epoch: datetime | None = None) -> PendingCreate | None:
    """Which of our pending creates made `copy` (a document our API user created, edited since), if any.

    The create whose sent content it resembles most (at least MIN_LIKENESS). Creates it resembles equally are
    told apart by when they were sent — a site stamps `creation` as it serves the request, so the attempt
    sent closest to that stamp made it — and then by record id. The answer depends only on the copy and the
    pending creates, so the copy's own webhook and each create's retry reach the same one: none waits on
    another, and no copy goes to two creates.
    """
    created = _creation(copy, zone)
    if created is None:
        return None
    if epoch is not None and created < epoch + CLOCK_SKEW:
        # Stamped (by the site's clock) before the state forgot pairs (a restore, a reset): perhaps a copy our
        # user made for a document the state no longer knows. Likeness cannot tell; only the exact hash of what
        # we sent, or the matching rules, may pair it.
        return None
    scored = [(_likeness(copy.canonical, p), p) for p in pending if created >= p.first_sent - CLOCK_SKEW]
    scored = [(score, p) for score, p in scored if score >= MIN_LIKENESS]
    if not scored:
        return None
    if rules:
        # Creates whose content has the copy's identity (its matching keys) first: two documents alike in every
        # other field (after a restore, our user's copies the state no longer knows) are told apart by it.
        keys = {k for k in matching.match_keys(rules, copy.canonical) if k is not None}
        same = [(score, p) for score, p in scored
                if keys & {k for sent in p.payloads for k in matching.match_keys(rules, sent) if k is not None}]
        scored = same or scored
    best = max(score for score, _ in scored)
    tied = [p for score, p in scored if score == best]
    return min(tied, key=lambda p: (_send_gap(created, p), p.record.record_id))


def _send_gap(created: datetime, pending: PendingCreate) -> timedelta:
    """How far the copy's creation stamp lies from the nearest attempt of `pending` (our clock vs the site's)."""
    return min(abs(created - sent) for sent in pending.sent)


def _likeness(canonical: dict[str, Any], pending: PendingCreate) -> float:
    return max((docs.likeness(canonical, sent) for sent in pending.payloads), default=0.0)


def _creation(doc: Fetched, zone: str) -> datetime | None:
    """When the site stamped `doc` as created (aware), or None without a readable stamp."""
    creation = (doc.doc or {}).get("creation")
    if not creation:
        return None
    try:
        return docs.parse_frappe_timestamp(str(creation), zone)
    except ValueError:
        return None


def _differing(fa: Fetched, fb: Fetched) -> list[str]:
    keys = fa.canonical.keys() | fb.canonical.keys()
    return sorted(k for k in keys if fa.canonical.get(k) != fb.canonical.get(k))


def failure_code(exc: BaseException) -> tuple[str, float | None]:
    """The taxonomy code of any failure, and how long to wait before retrying if the site said so."""
    if isinstance(exc, CircuitOpen):
        return str(exc.code), max(0.0, (exc.retry_at or 0.0) - time.monotonic())
    if isinstance(exc, ConnectorError):
        return str(exc.code), getattr(exc, "retry_after", None)
    if isinstance(exc, SyncFailed):
        return str(exc.code), exc.retry_after
    if isinstance(exc, ErpSyncError):
        return str(exc.code), None
    return str(ErrorCode.QUEUE), None
