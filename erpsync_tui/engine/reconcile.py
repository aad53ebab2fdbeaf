"""Reconciliation: compare a doctype across both sites, report what differs (with values), and apply it.

Linear in the number of documents: each site is read once — in pages of whole documents when list rows stand
for documents (no child tables, the full sync's own test, `eligibility.bulk_eligible`), else names first and each
document read concurrently — and the pairs of names come from the state database in one query. Values of
fields whose name looks like a secret are masked in the report.

`apply_differences` syncs each difference through the engine (`sync_document` from the side that has it),
so every rule of a sync holds: the doctype's policy, three-way merge against the stored base, conflicts for
`manual`, the lost-create recognition. It writes what a full sync would write, no more.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import aliased
from sqlmodel import select

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine.outcomes import Fetched, failure_code
from erpsync_tui.store.models import SyncName

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.reconcile")

SECRET_FIELD = re.compile(r"(pass(word)?|secret|token|api_?key|private|credential|pin\b|iban|card)", re.I)
MASK = "••••"
MAX_VALUE_CHARS = 200


@dataclass
class Difference:
    doctype: str
    kind: str  # missing_on:<site> | fields_differ
    names: dict[str, str]
    fields: list[str] = field(default_factory=list)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # field → site → value (secret-like masked)


@dataclass
class ReconcileReport:
    doctype: str
    counts: dict[str, int]
    differences: list[Difference]

    def as_dict(self) -> dict[str, Any]:
        return {"doctype": self.doctype, "counts": self.counts, "differences": [asdict(d) for d in self.differences]}

    def as_csv(self, *, header: bool = True) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        sites = list(self.counts)
        if header:
            writer.writerow(["doctype", "kind", *(f"name_{s}" for s in sites), "fields",
                             *(f"values_{s}" for s in sites)])
        for diff in self.differences:
            values = [" | ".join(f"{f}={diff.values.get(f, {}).get(s)!r}" for f in diff.fields) for s in sites]
            writer.writerow([diff.doctype, diff.kind, *(diff.names.get(s, "") for s in sites),
                             " ".join(diff.fields), *values])
        return out.getvalue()


def masked(field_name: str, value: Any) -> Any:
    """A value as the report shows it: masked for secret-like field names, clipped when long."""
    if value is None:
        return None
    if SECRET_FIELD.search(field_name):
        return MASK
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[: MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, list | dict):
        text = repr(value)
        return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
    return value


def name_pairs(engine: SyncEngine, doctype: str) -> dict[str, str]:
    """Every paired name of `doctype`: first site's name → second site's name, in one query."""
    a, b = engine.pair
    side_b = aliased(SyncName)
    query = (select(SyncName.name, side_b.name)
             .join(side_b, side_b.record_id == SyncName.record_id)  # type: ignore[arg-type]
             .where(SyncName.site == a, SyncName.doctype == doctype, side_b.site == b))
    with engine.db.read() as session:
        return {str(x): str(y) for x, y in session.exec(query).all()}


async def _documents(engine: SyncEngine, doctype: str, site: str, whole_rows: bool) -> dict[str, dict[str, Any]]:
    """Every document of `doctype` on `site`, by name.

    Whole rows: pages of list rows. Otherwise (child tables) one GET per document, at most `max_concurrency` at
    a time, each under the connector's rate limiter and circuit: Frappe's list API leaves child tables out and
    the reference names no batch read of whole documents (bench/bench_reconcile.py --doctype "Sales Order").
    """
    connector: Any = engine.connectors[site]
    if whole_rows:
        return {str(row["name"]): row async for row in connector.list_documents(doctype, fields=("*",))}
    names = [str(row["name"]) async for row in connector.list_documents(doctype, fields=("name",))]
    limit = asyncio.Semaphore(max(1, int(getattr(getattr(connector, "config", None), "max_concurrency", 8))))

    async def one(name: str) -> tuple[str, dict[str, Any] | None]:
        async with limit:
            return name, await connector.get(doctype, name)

    return {name: doc for name, doc in await asyncio.gather(*(one(n) for n in names)) if doc is not None}


async def _whole_rows(engine: SyncEngine, doctype: str) -> bool:
    from erpsync_tui.engine.eligibility import _rows_are_documents, bulk_eligible

    if not await bulk_eligible(engine, doctype):
        return False
    for site in engine.pair:
        async for row in engine.connectors[site].list_documents(doctype, fields=("*",), limit=1):
            if not await _rows_are_documents(engine, doctype, site, row):
                return False
    return True


def _canonical_all(engine: SyncEngine, doctype: str, site: str, docs: dict[str, dict[str, Any]]
                   ) -> dict[str, Fetched]:
    from erpsync_tui.engine import documents

    policy = engine.config.policy_for(doctype)
    out = {}
    for name, doc in docs.items():
        canonical = engine.canonical(policy, site, doc)
        out[name] = Fetched(site, doc, canonical, documents.content_hash(canonical))
    return out


async def reconcile(engine: SyncEngine, doctype: str) -> ReconcileReport:
    """Compare `doctype` across both sites, field by field, with values; writes nothing anywhere."""
    a, b = engine.pair
    whole = await _whole_rows(engine, doctype)
    docs_a, docs_b = await asyncio.gather(_documents(engine, doctype, a, whole), _documents(engine, doctype, b, whole))
    pairs = await asyncio.to_thread(name_pairs, engine, doctype)
    fetched_a, fetched_b = await asyncio.to_thread(
        lambda: (_canonical_all(engine, doctype, a, docs_a), _canonical_all(engine, doctype, b, docs_b)))
    differences: list[Difference] = []
    matched_b: set[str] = set()
    for name, fa in fetched_a.items():
        counterpart = pairs.get(name)
        fb = fetched_b.get(counterpart) if counterpart is not None else None
        if fb is None or counterpart is None:
            differences.append(Difference(doctype, f"missing_on:{b}", {a: name}))
            continue
        matched_b.add(counterpart)
        if fa.content_hash != fb.content_hash:
            fields = sorted(k for k in fa.canonical.keys() | fb.canonical.keys()
                            if fa.canonical.get(k) != fb.canonical.get(k))
            values = {f: {a: masked(f, fa.canonical.get(f)), b: masked(f, fb.canonical.get(f))} for f in fields}
            differences.append(Difference(doctype, "fields_differ", {a: name, b: counterpart}, fields, values))
    for name in fetched_b:
        if name not in matched_b:
            differences.append(Difference(doctype, f"missing_on:{a}", {b: name}))
    return ReconcileReport(doctype, {a: len(docs_a), b: len(docs_b)}, differences)


@dataclass
class ApplyResult:
    differences: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.differences:
            return "no differences: nothing to apply"
        done = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none synced"
        text = f"{self.differences} differences: {done}"
        if self.failed:
            text += f"; {len(self.failed)} failed ({self.failed[0]})"
        return text


def source_of(diff: Difference, pair: tuple[str, str]) -> tuple[str, str]:
    """Which side a difference is synced from: the side that has the document, else the pair's first site
    (the engine decides the direction from the stored base and the policy)."""
    if diff.kind.startswith("missing_on:"):
        site = pair[0] if diff.kind == f"missing_on:{pair[1]}" else pair[1]
        return site, diff.names[site]
    return pair[0], diff.names[pair[0]]


async def apply_differences(engine: SyncEngine, doctypes: list[str]) -> ApplyResult:
    """Sync every difference through the engine, under each doctype's policy."""
    result = ApplyResult()
    for doctype in doctypes:
        report = await reconcile(engine, doctype)
        result.differences += len(report.differences)
        for diff in report.differences:
            site, name = source_of(diff, engine.pair)
            try:
                synced = await engine.sync_document(doctype, site, name)
            except (ConnectorError, Exception) as exc:  # one document's failure must not stop the others
                code, _ = failure_code(exc)
                result.failed.append(f"{code} {doctype} {name}: {exc}"[:300])
                from erpsync_tui.engine.summary import record_failure

                await asyncio.to_thread(record_failure, engine, doctype, site, name, exc)
                continue
            result.outcomes[str(synced.outcome)] += 1
    return result
