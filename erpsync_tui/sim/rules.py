"""Frappe's document rules the simulated site enforces: names, mandatory fields, select options, links,
row checks, Sales Order's derived fields, and which docstatus transitions (and edits after submit) are allowed.

A mixin of `Store`, moved out of store.py so that file keeps storage, naming and queries: the rules read only
the site's documents (`_docs`, to check links and fetch names) and never write to the store themselves.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .doctypes import ChildSpec, DocTypeSpec

Doc = dict[str, Any]


def _blank(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


class DocumentRules:
    """The checks `Store` runs before it writes a document (see the module docstring)."""

    _docs: dict[str, dict[str, Doc]]  # doctype -> name -> document, kept by Store

    @staticmethod
    def _validate_name(doctype: str, name: str) -> str:
        name = name.strip()
        if not name:
            raise errors.ValidationError(f"Name is required for {doctype}")
        if "<" in name or ">" in name:
            raise errors.NameError("Name cannot contain special characters like <, >")
        return name

    # ---------------------------------------------------------------- validation

    def _validate(self, spec: DocTypeSpec, doc: Doc) -> None:
        if not spec.known:
            return
        missing = [spec.label(f) for f in spec.mandatory if _blank(doc.get(f))]
        if missing:
            raise errors.MandatoryError(f"Error: Value missing for {spec.name}: {', '.join(missing)}")
        for fieldname, options in spec.selects.items():
            value = doc.get(fieldname)
            if value not in (None, "") and value not in options:
                allowed = ", ".join(f'"{o}"' for o in options)
                raise errors.ValidationError(
                    f'{spec.label(fieldname)} cannot be "{value}". It should be one of {allowed}'
                )
        for fieldname, target in spec.links.items():
            value = doc.get(fieldname)
            if value not in (None, "") and value not in self._docs.get(target, {}):
                raise errors.LinkValidationError(f"Could not find {spec.label(fieldname)}: {value}")
        for fieldname, child in spec.tables.items():
            for row in doc.get(fieldname) or ():
                self._validate_row(child, row)

    def _validate_row(self, child: ChildSpec, row: Doc) -> None:
        idx = row.get("idx")
        for fieldname in child.mandatory:
            if _blank(row.get(fieldname)):
                label = child.labels.get(fieldname, fieldname)
                raise errors.MandatoryError(f"Error: Value missing for {child.doctype}: {label} (Row #{idx})")
        for fieldname, target in child.links.items():
            value = row.get(fieldname)
            if value not in (None, "") and value not in self._docs.get(target, {}):
                label = child.labels.get(fieldname, fieldname)
                raise errors.LinkValidationError(f"Could not find Row #{idx}: {label}: {value}")
        qty = row.get("qty")
        if qty is not None:
            try:
                positive = float(qty) > 0
            except (TypeError, ValueError):
                positive = False
            if not positive:
                raise errors.ValidationError(f"Row #{idx}: Quantity must be greater than 0")

    def _derive(self, spec: DocTypeSpec, doc: Doc) -> None:
        """ERPNext's fetch_from, totals and status for Sales Order."""
        if spec.name != "Sales Order":
            return
        # ERPNext computes status from docstatus (and delivery/billing, which the simulator does not have).
        doc["status"] = {0: "Draft", 1: "To Deliver and Bill", 2: "Cancelled"}.get(int(doc.get("docstatus") or 0),
                                                                                  "Draft")
        if _blank(doc.get("customer_name")) and doc.get("customer") in self._docs["Customer"]:
            doc["customer_name"] = self._docs["Customer"][doc["customer"]].get("customer_name")
        items = self._docs["Item"]
        total_qty = 0.0
        grand_total = 0.0
        for row in doc.get("items") or ():
            if _blank(row.get("item_name")) and row.get("item_code") in items:
                row["item_name"] = items[row["item_code"]].get("item_name")
            qty = float(row.get("qty") or 0)
            rate = float(row.get("rate") or 0)
            row["amount"] = round(qty * rate, 2)
            total_qty += qty
            grand_total += row["amount"]
        doc["total_qty"] = total_qty
        doc["grand_total"] = round(grand_total, 2)

    @staticmethod
    def _check_docstatus(spec: DocTypeSpec, old: Doc, new: Doc) -> None:
        before, after = old["docstatus"], new["docstatus"]
        if (before, after) not in ((0, 0), (0, 1), (1, 1), (1, 2)):
            raise errors.DocstatusTransitionError(f"Cannot change docstatus from {before} to {after}")
        if before == 0:
            return
        changed = [
            k for k in new
            if k not in ("docstatus", "modified", "modified_by") and k not in spec.tables and new[k] != old.get(k)
            and not (before == after == 1 and k in spec.allow_on_submit)
        ]
        for fieldname, child in spec.tables.items():
            sent, before_rows = new.get(fieldname) or [], old.get(fieldname) or []
            if len(sent) != len(before_rows) or any(
                isinstance(row, dict) and any(row[f] != prev.get(f) for f in child.fields if f in row)
                for row, prev in zip(sent, before_rows, strict=False)
            ):
                changed.append(fieldname)
        if changed:
            raise errors.UpdateAfterSubmitError(f"Not allowed to change {', '.join(changed)} after submission")
