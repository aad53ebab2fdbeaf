"""Document identity: recognising one document on both sites before anything is created (issue 13).

Two sites that already hold the same documents (set up apart, or a local site cloned from cloud), or a state
database that does not know a pair (restored from an older backup, reset, started empty), must not lead to a
second copy. Each doctype has matching rules — `sync.match.<Doctype>`, else `DEFAULT_RULES` — alternatives
tried in order, each a tuple of key fields compared after normalisation (`match_keys`). A full sync first
lists both sites with just those fields (the list API, no per-document GET), and before anything is created:

- a document with exactly one candidate on the other site (and that candidate with exactly one here) is paired,
  with no base: the two were never synced together, so the doctype's policy (or `manual`) settles every field
  that differs, as for any first contact;
- a document with two or more candidates is never paired automatically: it and its candidates are recorded as
  ambiguous (ERP009) and neither is created on the other site until an operator cleans up;
- the rest (no candidate under any rule) is created as before.

`match_keys` is the one definition of a document's identity keys; issue 14's rename detection reads it too.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from erpsync_tui.config import DoctypePolicy
from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine import documents as docs
from erpsync_tui.engine.links import link_fields

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")

Rule = tuple[str, ...]
Key = tuple[int, tuple[Any, ...]]  # (index of the rule, the normalised values of its fields)
LinkMap = Callable[[str, str], str | None]  # (link doctype, name on this site) → name on the pair's first site

# Built-in rules for the demo doctypes (README: "Matching rules"). A Customer or Supplier is its name (ERPNext
# itself names them so unless a series is chosen); an Item its code. A Sales Order has no natural key: its
# customer (translated into the first site's names) with its date and grand total — the total stands for the item
# rows, which the list API does not return. Two orders of one customer on one day for the same total are then
# ambiguous: reported, never paired by guess.
DEFAULT_RULES: dict[str, tuple[Rule, ...]] = {
    "Item": (("item_code",),),
    "Customer": (("customer_name",),),
    "Supplier": (("supplier_name",),),
    "Sales Order": (("customer", "transaction_date", "grand_total"),),
}


# What an amendment amends is part of every key of a doctype that links it (engine/links.py): an amendment copies
# its original's fields (customer, date, total), so an original and its amendments match one another under any
# rule — after a restore that forgot their pairs they would all be ambiguous for ever. Told apart by lineage, an
# original pairs with an original, and an amendment with the amendment of its original's counterpart.
LINEAGE = "amended_from"


def rules_for(policy: DoctypePolicy) -> tuple[Rule, ...]:
    """The doctype's matching rules: configured (`sync.match`), else built in; () when matching is off."""
    return policy.match if policy.match is not None else DEFAULT_RULES.get(policy.doctype, ())


def content_rules(policy: DoctypePolicy) -> tuple[Rule, ...]:
    """`rules_for`, each rule kept to the fields the normal form keeps (rules with none left dropped).

    For keys read from canonical contents (what we sent, a fetched copy's normal form): server-computed fields
    such as a Sales Order's grand_total are not in them. Pairing reads raw documents and uses every field.
    """
    kept = (tuple(f for f in rule if f not in policy.exclude_fields) for rule in rules_for(policy))
    return tuple(rule for rule in kept if rule)


def rule_fields(rules: Iterable[Rule], links: Mapping[str, str] | None = None) -> list[str]:
    """The fields to list for the keys: the rules' fields, and the lineage where the doctype has one."""
    lineage = [LINEAGE] if LINEAGE in (links or {}) else []
    return list(dict.fromkeys([*(f for rule in rules for f in rule), *lineage]))


def normalise_value(value: Any) -> Any:
    """A key value as compared: text NFKC-folded, case-folded and with whitespace collapsed; numbers by value.

    None for an empty value (a rule with an empty field does not apply).
    """
    if value is None or isinstance(value, (list, dict)):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, Decimal)):
        return docs.normalise({"v": value}).get("v")
    text = " ".join(unicodedata.normalize("NFKC", str(value)).casefold().split())
    return text or None


def match_keys(rules: Sequence[Rule], doc: Mapping[str, Any], links: Mapping[str, str] | None = None,
               link_map: LinkMap | None = None) -> list[Key | None]:
    """The document's key under each rule (None where a field is empty or a link is not mapped yet).

    `links` (field → linked doctype) and `link_map` express link values in the pair's first site's names, so a
    document on either site yields the same keys.
    """
    lineage = _lineage(doc, links or {}, link_map)
    return [_key(index, rule, doc, links or {}, link_map, lineage) for index, rule in enumerate(rules)]


def _lineage(doc: Mapping[str, Any], links: Mapping[str, str], link_map: LinkMap | None) -> tuple[Any, ...] | None:
    """() for a doctype without amendments; ("",) for an original; (its original in the first site's names,) for
    an amendment; None while that original has no counterpart (no rule can tell its amendment yet)."""
    if LINEAGE not in links:
        return ()
    original = doc.get(LINEAGE)
    if not isinstance(original, str) or not original:
        return ("",)
    mapped = link_map(links[LINEAGE], original) if link_map is not None else original
    return (normalise_value(mapped),) if mapped else None


def _key(index: int, rule: Rule, doc: Mapping[str, Any], links: Mapping[str, str],
         link_map: LinkMap | None, lineage: tuple[Any, ...] | None = ()) -> Key | None:
    if lineage is None and LINEAGE not in rule:
        return None
    values = []
    for fieldname in rule:
        raw = doc.get(fieldname)
        if fieldname in links and isinstance(raw, str) and raw and link_map is not None:
            raw = link_map(links[fieldname], raw)
        value = normalise_value(raw)
        if value is None:
            return None
        values.append(value)
    return index, tuple(values) + (lineage if lineage and LINEAGE not in rule else ())


# ============================================================================================ the plan (pure)


@dataclass
class Pairing:
    names: dict[str, str]  # site → name
    rule: list[str]
    differs: bool | None = None  # content differs (a conflict or a policy decision to expect); None: not compared
    # Identical on both sites (compared from whole listed rows): recorded as synced at once, with this base and each
    # site's (hash, modified), so the walk that follows has nothing to read for it. None: recorded without a base.
    synced: tuple[dict[str, Any], str, dict[str, tuple[str, str | None]]] | None = field(default=None, repr=False)


@dataclass
class Ambiguity:
    site: str
    name: str
    candidates: list[str]  # names on the other site
    rule: list[str]


@dataclass
class MatchPlan:
    doctype: str
    pairs: list[Pairing] = field(default_factory=list)
    ambiguous: list[Ambiguity] = field(default_factory=list)
    to_create: dict[str, list[str]] = field(default_factory=dict)  # site → names to be created on the other site
    duplicates: list[Ambiguity] = field(default_factory=list)  # also among paired docs: what past duplicates left
    known: dict[str, int] = field(default_factory=dict)  # site → documents the state database already pairs
    # (site, name, names there): paired documents whose counterpart is gone from the other site, and the documents
    # to create there they match — after a restore, the copy re-created since for an edit that outlived a delete.
    orphans: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("orphans")
        for pair in data["pairs"]:
            pair.pop("synced", None)
        data["counts"] = {"pairs": len(self.pairs), "ambiguous": len(self.ambiguous),
                          "expected_conflicts": sum(1 for p in self.pairs if p.differs),
                          **{f"to_create_from_{s}": len(n) for s, n in self.to_create.items()},
                          "duplicates": len(self.duplicates)}
        return data


def plan_pairs(rules: Sequence[Rule], keys: Mapping[str, Mapping[str, list[Key | None]]], sites: tuple[str, str],
               ) -> tuple[list[Pairing], list[Ambiguity], dict[str, list[str]]]:
    """Pair unpaired documents by their keys: (pairs, ambiguous documents, unmatched names per site).

    `keys[site][name]` is the document's `match_keys`. Rules are tried in order; the first rule under which a
    document has any candidate decides it: exactly one candidate each way pairs, more is ambiguous.
    """
    a, b = sites
    decided: dict[str, set[str]] = {a: set(), b: set()}
    pairs: list[Pairing] = []
    ambiguous: list[Ambiguity] = []
    for index, rule in enumerate(rules):
        index_of = {site: _index(keys[site], index, decided[site]) for site in sites}
        for key, a_names in index_of[a].items():
            b_names = index_of[b].get(key)
            if not b_names:
                continue
            if len(a_names) == 1 and len(b_names) == 1:
                pairs.append(Pairing({a: a_names[0], b: b_names[0]}, list(rule)))
            else:
                ambiguous += [Ambiguity(a, n, list(b_names), list(rule)) for n in a_names]
                ambiguous += [Ambiguity(b, n, list(a_names), list(rule)) for n in b_names]
            decided[a].update(a_names)
            decided[b].update(b_names)
    unmatched = {site: [n for n in keys[site] if n not in decided[site]] for site in sites}
    return pairs, ambiguous, unmatched


def duplicates(rules: Sequence[Rule], keys: Mapping[str, Mapping[str, list[Key | None]]],
               sites: tuple[str, str]) -> list[Ambiguity]:
    """Documents on one site matching two or more on the other by a rule — the shape a past duplicate leaves."""
    found: dict[tuple[str, str], Ambiguity] = {}
    for index, rule in enumerate(rules):
        index_of = {site: _index(keys[site], index, set()) for site in sites}
        for site in sites:
            other = sites[1] if site == sites[0] else sites[0]
            for key, names in index_of[site].items():
                candidates = index_of[other].get(key, [])
                if len(candidates) >= 2:
                    for name in names:
                        found.setdefault((site, name), Ambiguity(site, name, list(candidates), list(rule)))
    return list(found.values())


def _index(keys: Mapping[str, list[Key | None]], index: int, skip: set[str]) -> dict[Key, list[str]]:
    out: dict[Key, list[str]] = defaultdict(list)
    for name, doc_keys in keys.items():
        key = doc_keys[index] if index < len(doc_keys) else None
        if key is not None and name not in skip:
            out[key].append(name)
    return out


# ============================================================================================ against the sites


class MatchingFailed(Exception):
    """The sites could not be listed by the doctype's key fields (an unknown field, a site down)."""


async def keyed_listing(engine: SyncEngine, policy: DoctypePolicy, site: str, rules: Sequence[Rule],
                        *, whole: bool = False) -> tuple[dict[str, list[Key | None]], dict[str, dict[str, Any]]]:
    """Every document of the doctype on `site` with its keys (one paged listing of the key fields)."""
    links = link_fields(policy.doctype, policy.links)
    fields = ("*",) if whole else ("name", "modified", *rule_fields(rules, links))
    try:
        rows = [row async for row in engine.connectors[site].list_documents(policy.doctype, fields=fields,
                                                                             page_size=1000)]
    except ConnectorError as exc:
        raise MatchingFailed(f"{policy.doctype} on {site}: listing by the matching fields "
                             f"{rule_fields(rules, links)} failed: {exc}") from exc
    first = engine.pair[0]

    def keyed() -> dict[str, list[Key | None]]:
        cache: dict[tuple[str, str], str | None] = {}

        def to_first(doctype: str, name: str) -> str | None:
            if (doctype, name) not in cache:
                cache[doctype, name] = engine.state.translate_name(doctype, site, name, first)
            return cache[doctype, name]

        return {row["name"]: match_keys(rules, row, links, None if site == first else to_first) for row in rows}

    return await asyncio.to_thread(keyed), {row["name"]: row for row in rows}


async def plan_doctype(engine: SyncEngine, doctype: str, *, compare: bool = False) -> MatchPlan:
    """What pairing would do for one doctype now (reads only): pairs, ambiguous, to create, duplicates."""
    plan, _rows = await _plan(engine, doctype, compare=compare)
    return plan


async def _plan(engine: SyncEngine, doctype: str, *, compare: bool = False, whole: bool = False,
                ) -> tuple[MatchPlan, dict[str, dict[str, dict[str, Any]]]]:
    policy = engine.config.policy_for(doctype)
    rules = rules_for(policy)
    plan = MatchPlan(doctype)
    if not rules:  # matching is off for this doctype: nothing to list
        return plan, {}
    listed = {}
    rows_of = {}
    for site in engine.pair:
        listed[site], rows_of[site] = await keyed_listing(engine, policy, site, rules, whole=whole)
    unpaired = {}
    for site in engine.pair:
        open_names = await asyncio.to_thread(engine.state.unpaired_names, site, doctype, list(listed[site]))
        unpaired[site] = {n: k for n, k in listed[site].items() if n in open_names}
        plan.known[site] = len(listed[site]) - len(unpaired[site])
    plan.pairs, plan.ambiguous, unmatched = plan_pairs(rules, unpaired, engine.pair)
    plan.to_create = unmatched
    plan.orphans = await asyncio.to_thread(_orphans, engine, doctype, listed, unmatched)
    plan.duplicates = duplicates(rules, listed, engine.pair)
    if compare and plan.pairs:
        await _compare_pairs(engine, policy, plan)
    return plan, rows_of


def _orphans(engine: SyncEngine, doctype: str, listed: Mapping[str, Mapping[str, list[Key | None]]],
             unmatched: Mapping[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    """Paired documents matching a document to create on the other site whose recorded counterpart there is no
    longer listed (deleted or renamed since the state recorded the pair). Only those matching are looked up."""
    found: list[tuple[str, str, list[str]]] = []
    for site in engine.pair:
        other = engine.other(site)
        wanted: dict[Key, list[str]] = defaultdict(list)
        for name in unmatched.get(other, []):
            for key in listed[other][name]:
                if key is not None:
                    wanted[key].append(name)
        if not wanted:
            continue
        to_create = set(unmatched.get(site, []))
        alike = {n: [there for k in keys if k in wanted for there in wanted[k]]
                 for n, keys in listed[site].items() if n not in to_create}
        alike = {n: there for n, there in alike.items() if there}
        for name, record in engine.state.find_many(site, doctype, list(alike)).items():
            counterpart = record.sides.get(other)
            if counterpart is not None and counterpart.name not in listed[other]:
                found.append((site, name, list(dict.fromkeys(alike[name]))))
    return found


async def _compare_pairs(engine: SyncEngine, policy: DoctypePolicy, plan: MatchPlan) -> None:
    """Mark each planned pair whose content differs (one read per pair: a dry run, not the hot path)."""
    semaphore = asyncio.Semaphore(engine.config.sync.concurrency)

    async def one(pairing: Pairing) -> None:
        async with semaphore:
            fetched = [await engine.fetch(policy, site, name) for site, name in pairing.names.items()]
            if all(f.doc is not None for f in fetched):
                pairing.differs = fetched[0].content_hash != fetched[1].content_hash

    await asyncio.gather(*(one(p) for p in plan.pairs))


async def pair_before_sync(engine: SyncEngine, doctype: str,
                           whole_rows: Callable[[str, dict[str, Any]], Any] | None = None) -> MatchPlan:
    """Pair what the sites already share, record ambiguity, before a full sync of `doctype` creates anything.

    `whole_rows(site, row)` (awaitable → bool), given for doctypes whose list rows are whole documents (the bulk
    path's check): the sites are then listed with every field, and pairs identical on both sides are recorded as
    synced right away — the walk after it reads nothing more for them.
    """
    plan, rows_of = await _plan(engine, doctype, whole=whole_rows is not None)
    if whole_rows is not None and plan.pairs and all(
            [await whole_rows(site, next(iter(rows.values()))) for site, rows in rows_of.items() if rows]):
        policy = engine.config.policy_for(doctype)
        await asyncio.to_thread(_compare_listed, engine, policy, plan.pairs, rows_of)
    await asyncio.to_thread(engine.state.record_identity, doctype, plan.pairs, plan.ambiguous,
                            plan.to_create)
    if plan.pairs or plan.ambiguous:
        log.info("matching %s: %d pairs, %d ambiguous", doctype, len(plan.pairs), len(plan.ambiguous))
    return plan


def _compare_listed(engine: SyncEngine, policy: DoctypePolicy, pairs: list[Pairing],
                    rows_of: Mapping[str, Mapping[str, dict[str, Any]]]) -> None:
    """Mark each pair identical or differing from the listed whole documents (canonical form, as the walk does)."""
    for pairing in pairs:
        canonical: dict[str, dict[str, Any]] = {}
        hashes: dict[str, str] = {}
        for site, name in pairing.names.items():
            canonical[site] = engine.canonical(policy, site, rows_of[site][name])
            hashes[site] = docs.content_hash(canonical[site])
        first = engine.pair[0]
        pairing.differs = len(set(hashes.values())) > 1
        if not pairing.differs:
            pairing.synced = (canonical[first], hashes[first], {
                site: (hashes[site], rows_of[site][name].get("modified")) for site, name in pairing.names.items()})


def plan_csv(plans: Iterable[MatchPlan], sites: tuple[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["doctype", "kind", f"name_{sites[0]}", f"name_{sites[1]}", "rule", "candidates", "differs"])
    for plan in plans:
        for p in plan.pairs:
            writer.writerow([plan.doctype, "pair", p.names.get(sites[0], ""), p.names.get(sites[1], ""),
                             " ".join(p.rule), "", "" if p.differs is None else int(p.differs)])
        for kind, entries in (("ambiguous", plan.ambiguous), ("duplicate", plan.duplicates)):
            for amb in entries:
                names = [amb.name if amb.site == s else "" for s in sites]
                writer.writerow([plan.doctype, kind, *names, " ".join(amb.rule), " ".join(amb.candidates), ""])
        for site, names in plan.to_create.items():
            for name in names:
                row = [name if site == s else "" for s in sites]
                writer.writerow([plan.doctype, f"create_from:{site}", *row, "", "", ""])
    return out.getvalue()


def report_lines(plans: Iterable[MatchPlan], pair: tuple[str, str]) -> list[str]:
    """The dry run in plain lines (`erpsync-tui match`): per doctype a summary, then what needs a look."""
    lines = []
    for plan in plans:
        counts = plan.as_dict()["counts"]
        creates = ", ".join(f"{len(names)} from {site}" for site, names in plan.to_create.items())
        lines.append(f"{plan.doctype}: {counts['pairs']} to pair ({counts['expected_conflicts']} differ: conflict "
                     f"or policy), {counts['ambiguous']} ambiguous, to create: {creates}; already paired: "
                     + ", ".join(f"{n} on {s}" for s, n in plan.known.items()))
        for p in plan.pairs:
            if p.differs is not False:  # identical pairs only in the count (--format csv lists every one)
                mark = " (differs)" if p.differs else ""
                lines.append(f"  pair      {p.names[pair[0]]} ↔ {p.names[pair[1]]} by {'+'.join(p.rule)}{mark}")
        for a in plan.ambiguous:
            lines.append(f"  AMBIGUOUS {a.name} on {a.site} matches {', '.join(a.candidates)} by {'+'.join(a.rule)}")
        for a in plan.duplicates:
            lines.append(f"  DUPLICATE {a.name} on {a.site} matches {len(a.candidates)} on the other site: "
                         f"{', '.join(a.candidates)} by {'+'.join(a.rule)}")
    return lines


async def dry_run(engine: SyncEngine, doctypes: Iterable[str] | None = None) -> list[MatchPlan]:
    """`plan_doctype` for each doctype (config order), comparing the planned pairs' content. Writes nothing."""
    return [await plan_doctype(engine, d, compare=True) for d in (doctypes or engine.config.sync.doctypes)]
