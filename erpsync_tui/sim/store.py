"""One site's documents: naming, validation, optimistic concurrency, deletes, list queries.

All public methods take `self.lock` (an RLock), so the store may be used from the server loop thread and from
test/traffic threads at once. Stored doc dicts are never mutated in place (updates replace them), which lets
list queries keep cached sort orders and hand out cheap copies.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import errors
from .clock import SiteClock
from .doctypes import (
    CHILD_DOCTYPES,
    CHILD_STANDARD_FIELDS,
    SPECS,
    STANDARD_FIELDS,
    ChildSpec,
    DocTypeSpec,
    doctype_meta,
    spec_for,
)
from .persistence import SqliteBackend
from .query import compile_filters, parse_fields, parse_order_by, project, sort_docs
from .rules import DocumentRules, _blank

Doc = dict[str, Any]

# Doctypes that exist on every ERPNext site without demo validation; other unknown doctypes come into being
# on their first insert (until then they answer 404 like a missing DocType).
PREEXISTING_DOCTYPES = (
    "Contact", "Address", "Item Group", "Customer Group", "Territory", "Supplier Group", "UOM", "Warehouse",
    "Company", "Sales Invoice", "Purchase Order", "Quotation", "Lead", "Project", "Task", "ToDo", "Note", "User",
)
_TS_FORMAT_LEN = len("YYYY-MM-DD HH:MM:SS.ffffff")


def copy_doc(doc: Doc) -> Doc:
    """A copy deep enough for callers to mutate: parent dict plus each child row."""
    out = dict(doc)
    for key, value in out.items():
        if isinstance(value, list):
            out[key] = [dict(row) if isinstance(row, dict) else row for row in value]
    return out


class Store(DocumentRules):
    def __init__(
        self,
        site_name: str,
        *,
        timezone: str = "UTC",
        seed: int = 0,
        persist_path: str | Path | None = None,
        clock_offset_s: float = 0.0,
    ) -> None:
        self.site_name = site_name
        self.lock = threading.RLock()
        self.clock = SiteClock(timezone, clock_offset_s)
        self._rng = random.Random(f"names:{seed}:{site_name}")
        self._docs: dict[str, dict[str, Doc]] = {name: {} for name in (*SPECS, *PREEXISTING_DOCTYPES)}
        self._dynamic_fields: dict[str, set[str]] = {}
        self._counters: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._sorted: dict[tuple[str, tuple[tuple[str, bool], ...]], tuple[int, list[Doc]]] = {}
        self._db = SqliteBackend(persist_path) if persist_path else None
        if self._db is not None:
            self._load()

    # ---------------------------------------------------------------- persistence

    def _load(self) -> None:
        assert self._db is not None
        docs, counters = self._db.load()
        self._counters.update(counters)
        for doctype, doc in docs:
            self._docs.setdefault(doctype, {})[doc["name"]] = doc
            self._learn_fields(doctype, doc)
            self.clock.observe(doc.get("modified", ""))

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Hold the lock and batch SQLite writes (seeding)."""
        with self.lock:
            if self._db is None:
                yield
            else:
                with self._db.transaction():
                    yield

    def close(self) -> None:
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---------------------------------------------------------------- metadata

    def doctype_exists(self, doctype: str) -> bool:
        return doctype in self._docs

    def known_fields(self, doctype: str) -> set[str]:
        """Columns a query may name: standard fields plus declared (or, for ad-hoc doctypes, seen) fields."""
        if doctype in CHILD_DOCTYPES:
            parent, parentfield = CHILD_DOCTYPES[doctype]
            return {*CHILD_STANDARD_FIELDS, *SPECS[parent].tables[parentfield].fields}
        spec = spec_for(doctype)
        if spec.known:
            return {*STANDARD_FIELDS, *(f for f in spec.fields if f not in spec.tables)}
        return {*STANDARD_FIELDS, *self._dynamic_fields.get(doctype, ())}

    def _columns(self, doctype: str) -> list[str]:
        spec = spec_for(doctype)
        declared = (
            [f for f in spec.fields if f not in spec.tables]
            if spec.known
            else sorted(self._dynamic_fields.get(doctype, ()))
        )
        return [*STANDARD_FIELDS, *(f for f in declared if f not in STANDARD_FIELDS)]

    def _learn_fields(self, doctype: str, doc: Doc) -> None:
        if not spec_for(doctype).known:
            fields = self._dynamic_fields.setdefault(doctype, set())
            fields.update(k for k, v in doc.items() if not isinstance(v, list))

    def _bump(self, doctype: str) -> None:
        self._versions[doctype] = self._versions.get(doctype, 0) + 1

    def _hash(self) -> str:
        # frappe.generate_hash(length=10): ten lowercase hex characters
        return f"{self._rng.getrandbits(40):010x}"

    # ---------------------------------------------------------------- naming

    def _next_in_series(self, prefix: str, taken: dict[str, Doc]) -> str:
        while True:
            value = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = value
            if self._db is not None:
                self._db.set_counter(prefix, value)
            name = f"{prefix}{value:05d}"
            # Real Frappe would fail with a duplicate here; skipping taken names keeps demos running.
            if name not in taken:
                return name

    def _autoname(self, spec: DocTypeSpec, doc: Doc, now: str) -> str:
        naming = spec.naming
        if naming.startswith("field:"):
            return str(doc.get(naming[6:]) or "").strip()
        if naming.startswith("series:"):
            return self._next_in_series(naming[7:].replace("{YYYY}", now[:4]), self._docs.get(spec.name, {}))
        return self._hash()

    def _amended_name(self, doctype: str, amended_from: str) -> str:
        """Frappe's _set_amended_name: "<original>-1", and "<original>-(N+1)" for an amendment of "<original>-N"."""
        counter, prefix = 1, amended_from
        previous = self._docs.get(doctype, {}).get(amended_from)
        if previous is not None and not _blank(previous.get("amended_from")):
            head, _, tail = amended_from.rpartition("-")
            if head and tail.isdigit():
                counter, prefix = int(tail) + 1, head
        return f"{prefix}-{counter}"

    # ---------------------------------------------------------------- child rows

    def _make_row(self, child: ChildSpec, parent: Doc, parentfield: str, row: Any, idx: int, old: Doc | None) -> Doc:
        if not isinstance(row, dict):
            raise errors.ValidationError(f"Row #{idx} of {parentfield} must be an object")
        base = dict(old) if old is not None else {"name": self._hash(), "owner": parent["modified_by"],
                                                   "creation": parent["modified"]}
        for key, value in row.items():
            if key in child.fields:
                base[key] = value
        base.update(
            parent=parent["name"], parentfield=parentfield, parenttype=parent["doctype"], doctype=child.doctype,
            idx=idx, docstatus=parent["docstatus"], modified=parent["modified"], modified_by=parent["modified_by"],
        )
        return base

    def _build_table(
        self, child: ChildSpec, parent: Doc, parentfield: str, rows: Any, existing: list[Doc]
    ) -> list[Doc]:
        """Frappe's table replace: rows naming an existing row update it, others are inserted, the rest deleted."""
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise errors.ValidationError(f"{parentfield} must be a list of rows")
        by_name = {r["name"]: r for r in existing}
        # A row naming a row we do not have gets a fresh name (it is inserted, like a new row).
        return [
            self._make_row(child, parent, parentfield, row, idx,
                           by_name.get(row.get("name")) if isinstance(row, dict) else None)
            for idx, row in enumerate(rows, start=1)
        ]

    # ---------------------------------------------------------------- writes

    def insert(self, doctype: str, body: Doc, user: str, *, timestamp: str | None = None) -> Doc:
        if doctype in CHILD_DOCTYPES:
            raise errors.ValidationError(f"{doctype} is a child table; insert it through its parent")
        spec = spec_for(doctype)
        with self.lock:
            now = timestamp or self.clock.now()
            doc: Doc = {k: v for k, v in spec.defaults.items()}
            for key, value in body.items():
                if key.startswith("__") or key in ("doctype", "modified", "modified_by"):
                    continue
                # Frappe keeps only real columns of known doctypes; unknown keys are silently dropped.
                if spec.known and key not in spec.fields and key not in STANDARD_FIELDS:
                    continue
                if key in spec.computed:  # the server computes these; a client's value is ignored
                    continue
                doc[key] = value
            explicit = doc.get("name")
            doc.update(
                name="", doctype=doctype, modified=now, modified_by=user,
                owner=doc.get("owner") or user, creation=doc.get("creation") or now,
                docstatus=int(doc.get("docstatus") or 0), idx=int(doc.get("idx") or 0),
            )
            for fieldname, child in spec.tables.items():
                doc[fieldname] = self._build_table(child, doc, fieldname, doc.get(fieldname), [])
            if doc["docstatus"] not in (0, 1) or (doc["docstatus"] == 1 and not spec.submittable and spec.known):
                # A new document is a draft, or submitted on insert; never cancelled (check_docstatus_transition).
                raise errors.DocstatusTransitionError(f"Cannot change docstatus from 0 to {doc['docstatus']}")
            # Validate before naming: a failed insert rolls back in Frappe, so it must not use up a series number.
            self._validate(spec, doc)
            if spec.submittable and not _blank(doc.get("amended_from")) and _blank(explicit):
                explicit = self._amended_name(spec.name, str(doc["amended_from"]))
            name = str(explicit) if not _blank(explicit) else self._autoname(spec, doc, now)
            table = self._docs.get(doctype, {})
            name = self._validate_name(doctype, name)
            if name in table:
                raise errors.DuplicateEntryError(f"{doctype} {name} already exists")
            doc["name"] = name
            for fieldname in spec.tables:
                for row in doc[fieldname]:
                    row["parent"] = name
            self._derive(spec, doc)
            self._docs[doctype] = table  # (an ad-hoc doctype comes into existence on its first insert)
            table[name] = doc
            self._learn_fields(doctype, doc)
            self._bump(doctype)
            if self._db is not None:
                self._db.put(doctype, name, doc)
            return copy_doc(doc)

    def insert_many(self, docs: list[Doc], user: str) -> list[Doc]:
        """Insert every document or none (Frappe runs frappe.client.insert_many in one request transaction).

        On any error the documents inserted so far are removed again and the naming counters restored, so a
        failed call leaves no trace; the error is re-raised.
        """
        with self.lock:
            counters = dict(self._counters)
            done: list[Doc] = []
            try:
                with self._db.atomic() if self._db is not None else contextlib.nullcontext():
                    for doc in docs:
                        done.append(self.insert(str(doc.get("doctype") or ""), doc, user))
            except BaseException:
                for doc in done:
                    self._docs[doc["doctype"]].pop(doc["name"], None)
                    self._bump(doc["doctype"])
                self._counters = counters
                raise
            return done

    def update(self, doctype: str, name: str, changes: Doc, user: str) -> Doc:
        spec = spec_for(doctype)
        with self.lock:
            old = self._require(doctype, name)
            # Frappe's check_if_latest: the `modified` sent (after doc.update(body)) must equal the stored one.
            if "modified" in changes and str(changes["modified"]) != old["modified"]:
                raise errors.TimestampMismatchError(
                    "Error: Document has been modified after you have opened it "
                    f"({changes['modified']}, {old['modified']}). Please refresh to get the latest document."
                )
            new = dict(old)
            for key, value in changes.items():
                if key in STANDARD_FIELDS and key != "docstatus":
                    continue
                if key.startswith("__") or (spec.known and key not in spec.fields and key != "docstatus"):
                    continue
                if key in spec.computed:
                    continue
                new[key] = value
            new["docstatus"] = int(new.get("docstatus") or 0)
            self._check_docstatus(spec, old, new)
            new["modified"] = self.clock.now()
            new["modified_by"] = user
            for fieldname, child in spec.tables.items():
                rows = changes[fieldname] if fieldname in changes else old.get(fieldname) or []
                new[fieldname] = self._build_table(child, new, fieldname, rows, old.get(fieldname) or [])
            self._validate(spec, new)
            self._derive(spec, new)
            self._docs[doctype][name] = new
            self._learn_fields(doctype, new)
            self._bump(doctype)
            if self._db is not None:
                self._db.put(doctype, name, new)
            return copy_doc(new)

    def delete(self, doctype: str, name: str, user: str) -> Doc:
        with self.lock:
            doc = self._require(doctype, name)
            if doc.get("docstatus") == 1:
                raise errors.ValidationError(
                    f"Submitted Record cannot be deleted. You must Cancel {doctype} {name} first."
                )
            self._check_no_links(doctype, name)
            del self._docs[doctype][name]
            self._bump(doctype)
            if self._db is not None:
                self._db.remove(doctype, name)
            if doctype != "Deleted Document":
                self.insert(
                    "Deleted Document",
                    {"deleted_doctype": doctype, "deleted_name": name,
                     "data": json.dumps(doc, default=str, indent=1, sort_keys=True)},
                    user,
                )
            return copy_doc(doc)

    def rename(self, doctype: str, old_name: str, new_name: str, user: str, *, merge: bool = False) -> Doc:
        """frappe.rename_doc: the document takes `new_name`, every link to it on this site follows, a Comment says so.

        No `Deleted Document` row is written and no webhook fires. `modified` is left as it was (rename_doc
        updates the name column and the links in place). For doctypes named from a field, the field follows the
        new name (ERPNext's after_rename does so for Item's item_code and Customer's customer_name).
        """
        spec = spec_for(doctype)
        with self.lock:
            doc = self._require(doctype, old_name)
            new_name = self._validate_name(doctype, str(new_name))
            if merge:
                raise errors.ValidationError("Merging is not supported by the simulator")
            if new_name == old_name:
                return copy_doc(doc)
            if new_name in self._docs[doctype]:
                raise errors.ValidationError(f"Another {doctype} with name {new_name} exists, select another name")
            renamed = dict(doc, name=new_name)
            if spec.naming.startswith("field:"):
                renamed[spec.naming[6:]] = new_name
            for fieldname in spec.tables:
                renamed[fieldname] = [dict(row, parent=new_name) for row in doc.get(fieldname) or ()]
            del self._docs[doctype][old_name]
            self._docs[doctype][new_name] = renamed
            self._bump(doctype)
            if self._db is not None:
                self._db.remove(doctype, old_name)
                self._db.put(doctype, new_name, renamed)
            self._rewrite_links(doctype, old_name, new_name)
            self.insert("Comment", {"comment_type": "Edit", "reference_doctype": doctype, "reference_name": new_name,
                                    "content": f"renamed from {old_name} to {new_name}"}, user)
            return copy_doc(renamed)

    def _rewrite_links(self, doctype: str, old_name: str, new_name: str) -> None:
        """Every Link (and child-table Link) to `old_name` now says `new_name`; `modified` unchanged."""
        for spec in SPECS.values():
            table = self._docs.get(spec.name, {})
            for name, other in list(table.items()):
                changed = dict(other)
                touched = False
                for fieldname, target in spec.links.items():
                    if target == doctype and other.get(fieldname) == old_name:
                        changed[fieldname], touched = new_name, True
                for parentfield, child in spec.tables.items():
                    fields = [f for f, target in child.links.items() if target == doctype]
                    rows = other.get(parentfield) or []
                    if fields and any(row.get(f) == old_name for row in rows for f in fields):
                        changed[parentfield] = [
                            {**row, **{f: new_name for f in fields if row.get(f) == old_name}} for row in rows
                        ]
                        touched = True
                if touched:
                    table[name] = changed
                    self._bump(spec.name)
                    if self._db is not None:
                        self._db.put(spec.name, name, changed)

    def _check_no_links(self, doctype: str, name: str) -> None:
        for spec in SPECS.values():
            for fieldname, target in spec.links.items():
                if target == doctype:
                    for other in self._docs.get(spec.name, {}).values():
                        if other.get(fieldname) == name:
                            raise errors.LinkExistsError(
                                f"Cannot delete or cancel because {doctype} {name} is linked with "
                                f"{spec.name} {other['name']}"
                            )
            for parentfield, child in spec.tables.items():
                for fieldname, target in child.links.items():
                    if target != doctype:
                        continue
                    for other in self._docs.get(spec.name, {}).values():
                        if any(row.get(fieldname) == name for row in other.get(parentfield) or ()):
                            raise errors.LinkExistsError(
                                f"Cannot delete or cancel because {doctype} {name} is linked with "
                                f"{spec.name} {other['name']}"
                            )

    # ---------------------------------------------------------------- reads

    def doctype_document(self, doctype: str) -> Doc:
        """The `DocType` document of a declared doctype: its fields with their fieldtypes (Table for tables)."""
        if doctype in CHILD_DOCTYPES:
            parent, parentfield = CHILD_DOCTYPES[doctype]
            child = SPECS[parent].tables[parentfield]
            return doctype_meta(doctype, child.fields, {}, child.links, istable=True)
        spec = SPECS.get(doctype)
        if spec is None and doctype in self._docs:  # an ad-hoc doctype: the fields its documents brought
            return doctype_meta(doctype, tuple(sorted(self._dynamic_fields.get(doctype, ()))), {}, {})
        if spec is None:
            raise errors.DoesNotExistError(f"DocType {doctype} not found")
        return doctype_meta(doctype, spec.fields, spec.tables, spec.links, selects=spec.selects, spec=spec)

    def _require(self, doctype: str, name: str) -> Doc:
        table = self._docs.get(doctype)
        if table is None:
            raise errors.DoesNotExistError(f"DocType {doctype} not found")
        doc = table.get(name)
        if doc is None:
            raise errors.DoesNotExistError(f"{doctype} {name} not found")
        return doc

    def read(self, doctype: str, name: str) -> Doc:
        """Like get(), but raising DoesNotExistError (404) for the API."""
        with self.lock:
            return copy_doc(self._require(doctype, name))

    def get(self, doctype: str, name: str) -> Doc | None:
        with self.lock:
            doc = self._docs.get(doctype, {}).get(name)
            return copy_doc(doc) if doc is not None else None

    def all(self, doctype: str) -> list[Doc]:
        with self.lock:
            return [copy_doc(d) for d in self._docs.get(doctype, {}).values()]

    def names(self, doctype: str) -> list[str]:
        with self.lock:
            return list(self._docs.get(doctype, {}))

    def count(self, doctype: str, filters: Any = None) -> int:
        with self.lock:
            table = self._docs.get(doctype)
            if table is None:
                raise errors.DoesNotExistError(f"DocType {doctype} not found")
            if not filters:
                return len(table)
            predicate = self._predicate(doctype, filters, None)
            return sum(1 for d in table.values() if predicate is None or predicate(d))

    def _predicate(self, doctype: str, filters: Any, or_filters: Any) -> Any:
        child_tables = {child.doctype: f for f, child in spec_for(doctype).tables.items()}
        and_pred = compile_filters(filters, doctype, self.known_fields, child_tables)
        or_pred = compile_filters(or_filters, doctype, self.known_fields, child_tables, any_of=True)
        if and_pred and or_pred:
            return lambda d: and_pred(d) and or_pred(d)
        return and_pred or or_pred

    def _ordered(self, doctype: str, keys: tuple[tuple[str, bool], ...]) -> list[Doc]:
        version = self._versions.get(doctype, 0)
        cached = self._sorted.get((doctype, keys))
        if cached is not None and cached[0] == version:
            return cached[1]
        ordered = sort_docs(self._docs[doctype].values(), keys)
        self._sorted[(doctype, keys)] = (version, ordered)
        return ordered

    def list(
        self,
        doctype: str,
        *,
        fields: Any = None,
        filters: Any = None,
        or_filters: Any = None,
        order_by: str | None = None,
        limit_start: int = 0,
        limit_page_length: int = 20,
    ) -> list[Doc]:
        with self.lock:
            if doctype not in self._docs:
                raise errors.DoesNotExistError(f"DocType {doctype} not found")
            known = self.known_fields(doctype)
            columns = parse_fields(fields, self._columns(doctype), known)
            keys = parse_order_by(order_by)
            for fieldname, _ in keys:
                if fieldname not in known:
                    raise errors.DataError(f"Field not permitted in query: {fieldname}")
            predicate = self._predicate(doctype, filters, or_filters)
            out: list[Doc] = []
            skipped = 0
            for doc in self._ordered(doctype, keys):
                if predicate is not None and not predicate(doc):
                    continue
                if skipped < limit_start:
                    skipped += 1
                    continue
                out.append(project(doc, columns))
                if limit_page_length and len(out) >= limit_page_length:
                    break
            return out
