"""The create path of `SyncEngine`: a document one site has and the state does not know.

Before anything is created the engine looks for it on the other site: a document the matching rules pair with
it, a create of ours whose name we never learned (lost in a crash or a timeout), or a copy our API user made
and someone edited since. Only then does it create, with the intent recorded first, so a retry after a crash
finds the same document instead of creating a second one.

`CreatePath` is a mixin of `SyncEngine` (engine/sync.py), which supplies the state, the connectors and the
shared helpers (`fetch`, `fetched`, `_log`, `_run`, `_result`, `_with_links`, `target_body`, `_sync_once`).
It runs a little over 500 lines on purpose: every way a create can be recognised before it is repeated is read
here in the order `_create` tries them, and splitting that order across files would hide it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import ConnectorError, DuplicateEntry
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine import lifecycle, matching, renames
from erpsync_tui.engine.links import link_fields
from erpsync_tui.engine.matching import Rule
from erpsync_tui.engine.outcomes import DocResult, Fetched, Outcome, SyncFailed, _side
from erpsync_tui.engine.records import AttemptNoted, PendingCreate, RecordView, Side
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import RecordStatus

log = logging.getLogger("erpsync.engine")

CLOCK_SKEW = timedelta(minutes=2)  # tolerated difference between our clock and a site's `creation` stamps


class CreatePath:
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
        # Its linked documents first: a rule with a link field (a Sales Order's customer) applies only once the link
        # is mapped, and the create would sync them anyway. Matched before that, a document the other site already
        # holds was taken for a new one while a catch-up had not paired its customer yet.
        source = await self._ensure_links(policy, source, target_site, depth)
        # The matching rules before the likeness of a lost create: after a restore, a copy our user made for one
        # document can resemble another document's pending create (its name is what tells them apart).
        matched = await self._match_on_target(policy, source)
        if matched is not None:
            return await self._settle_match(policy, source, matched, depth)
        if await self._settled_orphans(policy, source, depth):
            return await self._sync_once(doctype, source.site, source.name or "", force_from=None, depth=depth + 1)
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
            lock = self.lock(doctype, target_site, name)
            if lock.locked() or depth >= 4:  # being synced right now (waiting could deadlock): the queue retries us
                raise SyncFailed(f"{doctype} {source.name}: matches {name} on {target_site}, whose unfinished create "
                                 "must be retried first; trying again after it", code=ErrorCode.RECONCILIATION)
            async with lock:
                await self._sync_once(doctype, target_site, name, force_from=None, depth=depth + 1)
        return True

    async def _settled_orphans(self, policy: DoctypePolicy, source: Fetched, depth: int) -> bool:
        """Pair this unknown document with the one paired document on the other site that it matches by the rules
        and whose recorded counterpart here is gone; True when paired (then decide again).

        That counterpart was renamed to this one (its Comments unreadable), or this is the copy re-created for it
        after a delete the state forgot (a restore: the survivor's edit outlived the delete). Either way this is
        its counterpart now — creating it back would make a duplicate, and syncing the survivor first would take
        the vanished name for a delete. (A full sync settles such pairs before its walk: `matching._orphans`.)
        """
        matched = await self._match_on_target(policy, source, orphaned=True)
        if matched is None or len(matched[1]) != 1:
            return False
        target_site, survivor = self.other(source.site), matched[1][0]
        record = await self._run(self.state.find, target_site, policy.doctype, survivor)
        if record is None or source.site not in record.sides:
            return False
        gone = record.sides[source.site].name
        if not await self._run(renames.rename_side, self, record.record_id, source.site, source.name or ""):
            return False
        await self._log(f"paired {policy.doctype} {source.name} on {source.site} with {survivor} on {target_site}, "
                        f"whose counterpart {gone} is gone (renamed, or re-created after a delete): not created",
                        "INFO", policy.doctype, source.site, source.name or "", outcome="paired")
        return True

    async def _match_on_target(self, policy: DoctypePolicy, source: Fetched, *,
                               unfinished: bool = False, orphaned: bool = False) -> tuple[Rule, list[str]] | None:
        """The unpaired documents on the other site this one matches by the doctype's rules, before creating it.

        Rules in order; the first under which any candidate exists decides: (rule, candidate names). Asked with
        list requests filtered by the rule's fields (`like`: case-insensitive on the site), confirmed by the
        normalised keys; a rule whose link field is not mapped yet does not apply. Also counted the other way: a
        candidate that matches several documents here is ambiguous too.

        `unfinished`: the candidates are instead documents whose record is an unfinished create from that site
        (one-sided, `creating`); `orphaned`: paired documents whose counterpart on this one's site is gone.
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
                                           unfinished=unfinished, orphaned=orphaned)
            if not there:
                continue
            if unfinished or orphaned:
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
                          key: matching.Key, source: Fetched, *, unfinished: bool = False,
                          orphaned: bool = False) -> list[str]:
        """Unpaired documents on `site` whose key under rule `index` is `key` (one filtered list request);
        `unfinished`: those whose record is an unfinished create from `site` instead; `orphaned`: those paired
        with a document on the source's site that is gone (one read each)."""
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
        # With the lineage (amended_from): an amendment's identity.
        fields = dict.fromkeys(("name", "modified", *matching.rule_fields([rules[index]], links),
                                *lifecycle.amendment_field(policy)))
        rows = [row async for row in self.connectors[site].list_documents(
            policy.doctype, fields=tuple(fields), filters=filters)]
        rows = await lifecycle.same_original(self, policy, source, site, rows)  # an amendment has its original's key
        alike = [row["name"] for row in rows
                 if (await self._run(self._keys_of, policy, site, row, rules))[index] == key]
        if unfinished:
            records = await self._run(self.state.find_many, site, policy.doctype, alike)
            return [name for name, record in records.items()
                    if record.status == RecordStatus.CREATING and list(record.sides) == [site]]
        if orphaned:
            records = await self._run(self.state.find_many, site, policy.doctype, alike)
            return [name for name, record in records.items() if source.site in record.sides
                    and record.sides[source.site].name != source.name
                    and await self.connectors[source.site].get(policy.doctype, record.sides[source.site].name) is None]
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
        target = await self.fetch(policy, target_site, names[0])
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
        target = await self.fetch(policy, target_site, names[0])
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
        owner = owner_of_copy(doc, pending, self._zone(doc.site), matching.content_rules(policy), epoch)
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
        source = await self.fetch(policy, origin_site, origin.name)
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
        sides = [Side(source.site, source.name or "", payload_hash, None),  # the copy: as its first save left it
                 Side(created.site, created.name or "", lifecycle.inserted_hash(payload), created.modified)]
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
        body = await self.target_body(policy, source.canonical, target_site)
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
        return source, await self.fetched(policy, target_site, answer)

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
            candidate = await self.fetch(policy, target_site, name)
            if candidate.doc is None or candidate.content_hash in others:
                continue
            if candidate.content_hash in mine.hashes:
                return candidate, True
            if user is not None and owner_of_copy(candidate, pending, zone, matching.content_rules(policy),
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
        existing = await self.fetch(policy, target_site, source.name or "")
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
