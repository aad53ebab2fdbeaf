"""Submit, cancel and amend as Frappe allows them (reference §5b), for the engine's writes.

* `docstatus` travels in an ordinary save: 0 → 1 submits, 1 → 2 cancels, nothing else. A document submitted and
  then cancelled on one site while its counterpart is still a draft arrives in two saves: the content with
  docstatus 1, then docstatus 2. A cancelled document is never inserted as such: it is inserted submitted, then
  cancelled.
* A cancel changes no field: the content a submitted document may still take (its "allow on submit" fields)
  is saved first, then the cancel alone.
* An amendment's `amended_from` is a link like any other (engine/links.py lists it for the submittable
  doctypes), translated into the target's name of the cancelled original; the original is synced first, so the
  amendment is created after it is cancelled there, and the target names it `<its original>-1`.
* A write the target refuses with UpdateAfterSubmitError or DocstatusTransitionError cannot succeed by retrying:
  it ends as a conflict with ERP008 and a quick fix (`refused`), and is not tried again until either version
  changes (`waiting_on_refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlmodel import col, select

from erpsync_tui.connectors.base import ValidationFailed
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine.links import link_fields
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import Conflict, ConflictStatus, RecordStatus

if TYPE_CHECKING:
    from erpsync_tui.config import DoctypePolicy
    from erpsync_tui.engine.records import RecordView
    from erpsync_tui.engine.sync import DocResult, Fetched, SyncEngine

LIFECYCLE_REFUSALS = frozenset({"UpdateAfterSubmitError", "DocstatusTransitionError"})
DOCSTATUS_WORDS = {0: "draft", 1: "submitted", 2: "cancelled"}


class WriteRefused(Exception):
    """The target refused a save because of the document's docstatus: no retry can make it pass."""

    def __init__(self, site: str, name: str, error: ValidationFailed) -> None:
        super().__init__(str(error))
        self.site, self.name, self.error = site, name, error

    @property
    def exc_type(self) -> str:
        return str(self.error.exc_type or "ValidationError")


def is_refusal(exc: BaseException) -> TypeGuard[ValidationFailed]:
    return isinstance(exc, ValidationFailed) and exc.exc_type in LIFECYCLE_REFUSALS


def docstatus_of(doc: Mapping[str, Any] | None) -> int:
    try:
        return int((doc or {}).get("docstatus") or 0)
    except (TypeError, ValueError):
        return 0


def update_steps(
    current: Mapping[str, Any], payload: dict[str, Any], exclude: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The saves that bring a document from `current` (its docstatus and normal form) to `payload`, in the
    order Frappe allows. Transitions Frappe never allows (2 → anything, 1 → 0) are sent as they are: the
    site refuses them, and `refused` explains it."""
    before = docstatus_of(current)
    after = docstatus_of(payload) if "docstatus" in payload else before
    content = {k: v for k, v in payload.items() if k not in ("docstatus", "modified")}
    if before == 0 and after == 2:
        return [{**payload, "docstatus": 1}, {"docstatus": 2}]
    if before == 1 and after == 2:
        current_content = {k: v for k, v in docs.normalise(current, exclude).items() if k != "docstatus"}
        changed = docs.normalise({k: v for k, v in content.items() if v is not None}, exclude) != current_content
        steps = [{**payload, "docstatus": 1}] if changed else []
        return [*steps, {"docstatus": 2}]
    return [payload]


def insert_steps(payload: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A cancelled document is inserted submitted, then cancelled (Frappe inserts drafts or submitted ones)."""
    if docstatus_of(payload) == 2:
        return {**payload, "docstatus": 1}, [{"docstatus": 2}]
    return payload, []


async def write_in_order(
    engine: SyncEngine, policy: DoctypePolicy, target: Fetched, payload: dict[str, Any], depth: int
) -> dict[str, Any]:
    """PUT `payload` onto `target` as one or more saves (see `update_steps`); the document as last answered."""
    assert target.doc is not None
    connector = engine.connectors[target.site]
    name = target.name or ""
    answer: dict[str, Any] | None = None
    try:
        for step in update_steps(target.doc, payload, policy.exclude_fields):
            if answer is not None:
                step = {**step, "modified": answer.get("modified")}
            answer = await engine._with_links(policy, target.site, depth, connector.update, policy.doctype, name, step)
    except ValidationFailed as exc:
        if is_refusal(exc):
            raise WriteRefused(target.site, name, exc) from exc
        raise
    assert answer is not None
    return answer


def inserted_hash(payload: dict[str, Any]) -> str:
    """The content hash of what the insert of `payload` itself saved: a cancelled document is inserted submitted
    (`insert_steps`), so a copy whose cancel was cut short holds that, and has not been changed by anyone since."""
    return docs.content_hash(insert_steps(payload)[0])


async def insert_in_order(
    engine: SyncEngine, policy: DoctypePolicy, target_site: str, depth: int, payload: dict[str, Any]
) -> dict[str, Any]:
    first, later = insert_steps(payload)
    connector = engine.connectors[target_site]
    answer = await engine._with_links(policy, target_site, depth, connector.insert, policy.doctype, first)
    for step in later:
        answer = await connector.update(policy.doctype, str(answer.get("name") or ""),
                                        {**step, "modified": answer.get("modified")})
    return answer


async def sync_amended_original_first(
    engine: SyncEngine, policy: DoctypePolicy, source: Fetched, depth: int
) -> Fetched:
    """An amendment is created after its original is cancelled on the target: sync the original first.

    Returns `source` in canonical form again: its `amended_from` may only now have a counterpart to translate to
    (a canonical form read before keeps the raw name, which on the other site may be another document).
    """
    original = (source.doc or {}).get("amended_from")
    if not original or depth >= 4:
        return source
    await engine._log(f"amended from {original}: syncing {original} first", "INFO", policy.doctype, source.site,
                      source.name or "", outcome="link")
    await engine.sync_document(policy.doctype, source.site, str(original), depth=depth + 1)
    return await engine.fetched(policy, source.site, source.doc)


def amendment_field(policy: DoctypePolicy) -> tuple[str, ...]:
    """("amended_from",) for a doctype whose amendments the engine links (engine/links.py), else ()."""
    return ("amended_from",) if "amended_from" in link_fields(policy.doctype, policy.links) else ()


async def same_original(engine: SyncEngine, policy: DoctypePolicy, source: Fetched, site: str,
                        rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matching candidates (list rows on `site`) that amend the same original as `source` — its counterpart
    there — or amend nothing when `source` amends nothing.

    An amendment carries its cancelled original's matching key (customer, date, total): without this, an
    amendment synced first was paired with its original's copy while that copy was unpaired (a lost answer).
    """
    if not amendment_field(policy):
        return rows
    original = (source.doc or {}).get("amended_from") or None
    if original is None:
        return [row for row in rows if not row.get("amended_from")]
    wanted = original if site == source.site else await engine._run(
        engine.state.translate_name, policy.doctype, source.site, str(original), site)
    return [row for row in rows if wanted is not None and row.get("amended_from") == wanted]


def quick_fix(exc: WriteRefused, doctype: str, status_there: int) -> str:
    there = DOCSTATUS_WORDS.get(status_there, str(status_there))
    if exc.exc_type == "UpdateAfterSubmitError":
        return (f"{doctype} {exc.name} is {there} on {exc.site}: it takes changes only to its 'Allow on Submit' "
                f"fields. Quick fix: cancel it and amend it on one site (the amendment syncs), or keep {exc.site}'s "
                "version (resolve this conflict taking that site)")
    return (f"{doctype} {exc.name} is {there} on {exc.site}, which refuses that docstatus change. Quick fix: "
            f"keep {exc.site}'s version (resolve this conflict taking that site), or cancel and amend the "
            "document where it is wrong")


async def refused(engine: SyncEngine, record: RecordView, fetched: dict[str, Fetched], exc: WriteRefused) -> DocResult:
    """A terminal, explained outcome: a conflict holding both versions, logged with ERP008 and a quick fix."""
    from erpsync_tui.engine.outcomes import Outcome

    a, b = engine.pair
    fa, fb = fetched[a], fetched[b]
    try:  # as they are now: a merge may have written one side before the other refused
        now_a, now_b = await engine._refetch_all(engine.config.policy_for(record.doctype), record)
        if now_a.doc is not None and now_b.doc is not None:
            fa, fb = now_a, now_b
    except Exception:  # the versions read before the write still explain the conflict
        pass
    target = {fa.site: fa, fb.site: fb}.get(exc.site)
    fields = sorted(k for k in fa.canonical.keys() | fb.canonical.keys() if fa.canonical.get(k) != fb.canonical.get(k))
    conflict_id = await engine._run(
        engine.state.open_conflict, record.record_id, record.doctype, {fa.site: fa.name or "", fb.site: fb.name or ""},
        {fa.site: fa.canonical, fb.site: fb.canonical}, {fa.site: fa.modified or "", fb.site: fb.modified or ""},
        record.base, fields)
    message = (f"conflict #{conflict_id}: {exc.site} refused the write ({exc.exc_type}). "
               f"{quick_fix(exc, record.doctype, docstatus_of(target.doc if target else None))}")
    await engine._log(message, "ERROR", record.doctype, exc.site, exc.name, outcome="conflict",
                      code=ErrorCode.VALIDATION)
    source = next(f for f in (fa, fb) if f.site != exc.site)
    return engine._result(record, source, Outcome.CONFLICT, detail=message)


async def refused_in_batch(engine: SyncEngine, record: RecordView, source_site: str, source_doc: dict[str, Any],
                           current: Fetched, exc: ValidationFailed) -> DocResult:
    """A bulk full sync's PUT refused for the document's docstatus: the same terminal ERP008 conflict as the
    per-document path's (`refused`), without handing it over — which would only send the refused write again."""
    source = await engine.fetched(engine.config.policy_for(record.doctype), source_site, source_doc)
    fetched: dict[str, Fetched] = {source_site: source, current.site: current}
    return await refused(engine, record, fetched, WriteRefused(current.site, current.name or "", exc))


def open_conflict_versions(engine: SyncEngine, record_id: int) -> dict[str, Any] | None:
    with engine.db.read() as session:
        row = session.exec(select(Conflict.versions).where(
            Conflict.record_id == record_id,
            col(Conflict.status).in_([ConflictStatus.OPEN, ConflictStatus.RESOLVING]))).first()
    return row


async def waiting_on_refusal(engine: SyncEngine, record: RecordView, fetched: dict[str, Fetched]) -> DocResult | None:
    """A record in conflict whose versions are exactly those of its open conflict: nothing to try again."""
    from erpsync_tui.engine.outcomes import Outcome

    if record.status != RecordStatus.CONFLICT:
        return None
    versions = await engine._run(open_conflict_versions, engine, record.record_id)
    if not versions or any(versions.get(site) != f.canonical for site, f in fetched.items()):
        return None
    source = fetched[engine.pair[0]]
    return engine._result(record, source, Outcome.SKIPPED, detail="unchanged since its conflict; waiting for an "
                                                                  "operator")


def forward_only(fa: Fetched, fb: Fetched) -> tuple[Fetched, Fetched] | None:
    """Two versions that differ only in docstatus: (the later state, the earlier one); else None.

    Frappe moves a document forward only (draft → submitted → cancelled), so when both sides count as changed
    but only docstatus differs — a submit or cancel half done by a killed engine, a cancelled document whose
    insert-then-cancel was cut short — the later state wins, whatever the conflict policy says (going back is
    refused by the site anyway).
    """
    a, b = docstatus_of(fa.canonical), docstatus_of(fb.canonical)
    if a == b:
        return None
    rest_a = {k: v for k, v in fa.canonical.items() if k != "docstatus"}
    rest_b = {k: v for k, v in fb.canonical.items() if k != "docstatus"}
    if rest_a != rest_b:
        return None
    return (fa, fb) if a > b else (fb, fa)


def describe_transition(before: int, after: int, amended_from: str | None = None) -> str:
    """Console wording for a docstatus change: "submitted", "cancelled", "amended from X"."""
    if amended_from and before == after == 0:
        return f"amended from {amended_from}"
    if (before, after) == (0, 1):
        return "submitted"
    if after == 2 and before != 2:
        return "cancelled"
    return ""
