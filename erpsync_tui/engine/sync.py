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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from erpsync_tui.config import AppConfig, DoctypePolicy
from erpsync_tui.connectors.base import (
    Connector,
    TimestampMismatch,
)
from erpsync_tui.engine import document_merge as merging
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine import lifecycle, renames
from erpsync_tui.engine.caches import EngineCaches
from erpsync_tui.engine.creates import CreatePath
from erpsync_tui.engine.link_path import LinkPath
from erpsync_tui.engine.links import link_fields, translate
from erpsync_tui.engine.locks import TaskLock
from erpsync_tui.engine.outcomes import (
    DocResult,
    Fetched,
    Outcome,
    SyncFailed,
    _differing,
    _hash_of,
    _side,
)
from erpsync_tui.engine.records import RecordView
from erpsync_tui.engine.sync_state import SyncState
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import RecordStatus

if TYPE_CHECKING:
    from erpsync_tui.engine.batch_pool import BatchPool

log = logging.getLogger("erpsync.engine")

MAX_STALE_RETRIES = 3  # refetch-and-decide rounds after a TimestampMismatch before giving up


# Frappe document events that mean "saved": the webhook's `modified` is then the saved version's.
SAVE_EVENTS = frozenset({"after_insert", "on_update", "on_change", "on_submit", "on_cancel",
                         "on_update_after_submit"})


class SyncEngine(CreatePath, LinkPath):
    """Syncs one document at a time; the bulk, reconcile and matching paths build on its public methods.

    Public, for the engine's other paths (bulk sync, batch processes, reconcile, matching, renames):
    - `sync_document`, `skip_known_version`, `resolve`: the per-document decisions;
    - `fetch(policy, site, name)` / `fetched(policy, site, doc)`: a document read (or as listed) in canonical
      form with its content hash; `canonical(policy, site, doc)`: only the canonical form;
    - `lock(doctype, site, name)`: the lock every write of that document holds (the bulk path takes it too);
    - `name_mapper(from_site, to_site)`, `target_body(policy, canonical, target_site)`: link values in the
      target's names, and the body to write there;
    - `other(site)`, and the attributes `config`, `db`, `state`, `connectors`, `pair`, `caches`.
    Underscored methods are the engine's own (and its mixins'): the create path lives in `CreatePath`
    (engine/creates.py), the link path in `LinkPath` (engine/link_path.py).
    """

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
        self._record_locks: dict[int, TaskLock] = {}
        self.echoes_skipped = 0  # webhooks that were the echo of our own write (settled without a request)
        self.batch_pool: BatchPool | None = None  # full-sync batches in worker processes (sync.workers)
        self._users: dict[str, str] = {}  # site → the user our credentials log in as
        self.caches = EngineCaches()  # what the bulk path and the rename check learned about the sites' doctypes

    # ==================================================================================== public API

    async def sync_document(
        self, doctype: str, site: str, name: str, *, force_from: str | None = None, depth: int = 0
    ) -> DocResult:
        """Bring one document (named `name` on `site`) in sync on both sites."""
        self._check_site(site)
        async with self.lock(doctype, site, name):
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
        for _ in range(MAX_STALE_RETRIES):
            record = await self._run(self.state.find, site, doctype, name)
            if record is None:
                return await self._decide(doctype, site, name, None, force_from=force_from, depth=depth)
            async with self.record_lock(record.record_id):
                # Read again under the lock: a sync of this record under its other name may just have changed it.
                current = await self._run(self.state.find, site, doctype, name)
                if current is not None and current.record_id == record.record_id:
                    return await self._decide(doctype, site, name, current, force_from=force_from, depth=depth)
            # The name left this record while we waited: look again outside its lock (deciding for another record
            # — or a create — while holding this one could wait on a sync that waits on us).
        raise SyncFailed(f"{doctype} {name}: its record kept changing while waiting; trying again later",
                         code=ErrorCode.QUEUE)

    async def _decide(self, doctype: str, site: str, name: str, record: RecordView | None, *,
                      force_from: str | None, depth: int) -> DocResult:
        policy = self.config.policy_for(doctype)
        source = await self.fetch(policy, site, name)
        if record is not None and record.status == RecordStatus.SET_APART:
            return await self._set_apart(record, source)
        if record is not None and record.status == RecordStatus.AMBIGUOUS:
            # Left for the operator; a full sync's matching pass (or `erpsync-tui match`) looks at it again.
            return await self._done(DocResult(doctype, site, name, Outcome.AMBIGUOUS,
                                              detail="matches several documents on the other site; not created"))
        if record is None:
            if source.doc is None:
                return await self._gone_untracked(doctype, site, name, depth)
            return await self._create(policy, source, depth=depth)
        target_site = self.other(site)
        target_side = record.sides.get(target_site)
        if target_side is None:
            return await self._one_sided(policy, record, source, depth=depth)
        target = await self.fetch(policy, target_site, target_side.name)
        fetched = {site: source, target_site: target}
        if source.doc is None or target.doc is None:
            return await self._deleted(policy, record, fetched, depth=depth)
        return await self._compare(policy, record, fetched, force_from=force_from, depth=depth)

    async def _gone_untracked(self, doctype: str, site: str, name: str, depth: int) -> DocResult:
        """A name neither tracked nor on the site. If it was renamed (rename_doc), the document under its new name is
        synced: this retry may be the only thing left that knows it changed — the name map moved during a sync that
        then failed (a link path that met the rename), or it was never synced at all (a rename keeps `modified`,
        so the listing's watermark may be past it)."""
        newer = await renames.renamed_to(self, doctype, site, name)
        if newer is not None:
            # No name lock here: this sync holds `name`'s, and a sync holding `newer`'s may wait on our record lock.
            return await self._sync_once(doctype, site, newer, force_from=None, depth=depth)
        return await self._done(DocResult(doctype, site, name, Outcome.NOT_FOUND))

    async def _set_apart(self, record: RecordView, source: Fetched) -> DocResult:
        """Left for the operator (engine/renames.py says why in the log); once deleted on its site, forgotten."""
        doctype, site, name = record.doctype, source.site, source.name or ""
        if source.doc is None:
            await self._run(self.state.forget_side, record.record_id, site)
            await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED, "deleted by the operator")
            return await self._done(DocResult(doctype, site, name, Outcome.NOT_FOUND,
                                              detail="the document set apart is gone: forgotten"))
        return await self._done(DocResult(doctype, site, name, Outcome.SKIPPED,
                                          detail="set apart for the operator (ERP009; the log says why)"))

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
        merge = merging.three_way_merge(record.base, fa.canonical, fb.canonical)
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
        body = await self.target_body(policy, canonical, target.site)
        current = docs.normalise(target.doc, policy.exclude_fields)
        payload = docs.to_write_payload(body, current, expected_modified=target.modified)
        answer = await lifecycle.write_in_order(self, policy, target, payload, depth)  # submit/cancel in order
        return await self.fetched(policy, target.site, answer)

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
        if not policy.propagate_deletes or survivor_changed:
            await self._run(self.state.forget_side, record.record_id, deleted.site)
            reason = "delete propagation is off" if not policy.propagate_deletes else "edited on the other site"
            await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED, reason)
            if survivor_changed and policy.propagate_deletes:
                # The survivor was edited after the delete: keep the edit and bring it back where it was deleted.
                view = await self._run(self.state.view, record.record_id)
                assert view is not None
                return await self._one_sided(policy, view, survivor, depth=depth)
            return await self._done(DocResult(record.doctype, deleted.site, record.sides[deleted.site].name,
                                              Outcome.SKIPPED, detail=f"delete not propagated: {reason}"))
        # The pair is forgotten only once the survivor is gone: a DELETE that fails is retried by the deleted name,
        # which must still lead to this record (forgotten first, the retry would stop at "not found" for good).
        await self.connectors[survivor.site].delete(record.doctype, survivor.name or "")
        for site in (deleted.site, survivor.site):
            await self._run(self.state.forget_side, record.record_id, site)
        await self._run(self.state.mark_status, record.record_id, RecordStatus.DELETED)
        return await self._done(DocResult(record.doctype, deleted.site, record.sides[deleted.site].name,
                                          Outcome.DELETED, writes=1, direction=f"{deleted.site}→{survivor.site}"))

    async def _one_sided(self, policy: DoctypePolicy, record: RecordView, present: Fetched, *, depth: int) -> DocResult:
        """A record known on one site only: a delete not propagated, or an unfinished create."""
        if present.doc is None:  # gone too: name it as it was known (a 404 carries no name)
            known = record.sides.get(present.site)
            return await self._done(DocResult(record.doctype, present.site, known.name if known else "",
                                              Outcome.NOT_FOUND))
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
        self, record_id: int, choices: Mapping[str, merging.Choice], *, actor: str, take: str | None = None
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
            resolved = merging.apply_resolution(view.base, fa.canonical, fb.canonical, named) if named else fa.canonical
        writes, sides = await self._write_both(policy, view, resolved, fa, fb, 0)
        await self._record_synced(view, resolved, *sides)
        await self._run(self.state.close_conflicts, record_id, {"take": take, "fields": dict(choices)}, actor)
        result = self._result(view, fa, Outcome.RESOLVED, writes=writes, direction="resolution",
                              detail=f"resolved by {actor}")
        return await self._done(result)

    def _side_label(self, choice: merging.Choice) -> merging.Choice:
        """apply_resolution speaks of "cloud"/"local" as the pair's first/second site."""
        if choice == self.pair[0]:
            return "cloud"
        if choice == self.pair[1]:
            return "local"
        return choice

    # ==================================================================================== helpers

    async def fetch(self, policy: DoctypePolicy, site: str, name: str) -> Fetched:
        doc = await self.connectors[site].get(policy.doctype, name)
        return await self.fetched(policy, site, doc)

    async def fetched(self, policy: DoctypePolicy, site: str, doc: dict[str, Any] | None) -> Fetched:
        if doc is None:
            return Fetched(site, None)
        if link_fields(policy.doctype, policy.links) and site != self.pair[0]:
            canonical = await self._run(self.canonical, policy, site, doc)  # link translation reads the DB
        else:
            canonical = self.canonical(policy, site, doc)
        return Fetched(site, doc, canonical, docs.content_hash(canonical))

    def canonical(self, policy: DoctypePolicy, site: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Normalised, with link values in the pair's first site's names (so both sides compare equal)."""
        try:
            normal = docs.normalise(doc, policy.exclude_fields)
        except (ValueError, TypeError) as exc:
            raise SyncFailed(f"{policy.doctype} {doc.get('name')}: cannot normalise: {exc}",
                             code=ErrorCode.TRANSFORMATION) from exc
        fields = link_fields(policy.doctype, policy.links)
        if not fields or site == self.pair[0]:
            return normal
        translated, _missing = translate(normal, fields, self.name_mapper(site, self.pair[0]))
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
            self.fetch(policy, a, record.sides[a].name), self.fetch(policy, b, record.sides[b].name)
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

    def lock(self, doctype: str, site: str, name: str) -> asyncio.Lock:
        key = (doctype, site, name)
        lock = self._locks.get(key)
        if lock is None:  # built only when missing: the bulk path asks for one per listed document
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def record_lock(self, record_id: int) -> TaskLock:
        """One sync decides for a record at a time, whichever site's name it came by (engine/locks.py)."""
        lock = self._record_locks.get(record_id)
        if lock is None:
            lock = self._record_locks[record_id] = TaskLock()
        return lock

    def _check_site(self, site: str) -> None:
        if site not in self.pair:
            raise SyncFailed(f"site {site!r} is not one of {self.pair}", code=ErrorCode.FIELD_MAPPING)

    @staticmethod
    async def _run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(func, *args, **kwargs)
