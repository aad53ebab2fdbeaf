"""Doctype metadata for the demo doctypes: fields, naming, mandatory values, selects, links, child tables."""

from __future__ import annotations

from dataclasses import dataclass, field

STANDARD_FIELDS: tuple[str, ...] = (
    "name", "owner", "creation", "modified", "modified_by", "docstatus", "idx", "doctype",
)
CHILD_STANDARD_FIELDS: tuple[str, ...] = (*STANDARD_FIELDS, "parent", "parentfield", "parenttype")


@dataclass(frozen=True)
class ChildSpec:
    doctype: str
    fields: tuple[str, ...]
    mandatory: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DocTypeSpec:
    """What the simulator validates for one doctype; unknown doctypes get a permissive spec."""

    name: str
    fields: tuple[str, ...] = ()
    mandatory: tuple[str, ...] = ()
    # "series:PREFIX" (PREFIX may hold {YYYY}), "field:<fieldname>" or "hash" (Frappe's default autoname)
    naming: str = "hash"
    selects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    tables: dict[str, ChildSpec] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    known: bool = True  # False for doctypes created on first insert: no validation, dynamic fields
    submittable: bool = False
    # Fields a submitted document may still change ("Allow on Submit"); any other change → UpdateAfterSubmitError.
    allow_on_submit: tuple[str, ...] = ()
    # Fields the server computes (a client's value is ignored), e.g. a Sales Order's status.
    computed: tuple[str, ...] = ()

    def label(self, fieldname: str) -> str:
        return self.labels.get(fieldname) or fieldname.replace("_", " ").title()


SALES_ORDER_ITEM = ChildSpec(
    doctype="Sales Order Item",
    fields=("item_code", "item_name", "description", "qty", "uom", "rate", "amount", "delivery_date"),
    mandatory=("item_code", "qty"),
    links={"item_code": "Item"},
    labels={"item_code": "Item Code", "qty": "Quantity"},
)

SPECS: dict[str, DocTypeSpec] = {
    spec.name: spec
    for spec in (
        DocTypeSpec(
            name="Customer",
            fields=(
                "customer_name", "customer_type", "customer_group", "territory", "email_id", "mobile_no",
                "tax_id", "disabled", "customer_details",
            ),
            mandatory=("customer_name",),
            # Real ERPNext names customers by customer_name unless Selling Settings picks a series;
            # the demo uses the series so that two sites collide on names (brief: CUST-#####).
            naming="series:CUST-",
            selects={"customer_type": ("Company", "Individual")},
            defaults={
                "customer_type": "Company", "customer_group": "All Customer Groups", "territory": "All Territories",
                "disabled": 0,
            },
        ),
        DocTypeSpec(
            name="Supplier",
            fields=("supplier_name", "supplier_type", "supplier_group", "country", "email_id", "disabled"),
            mandatory=("supplier_name",),
            naming="series:SUPP-",
            selects={"supplier_type": ("Company", "Individual")},
            defaults={"supplier_type": "Company", "supplier_group": "All Supplier Groups", "disabled": 0},
        ),
        DocTypeSpec(
            name="Item",
            fields=(
                "item_code", "item_name", "item_group", "stock_uom", "description", "standard_rate", "disabled",
                "is_stock_item",
            ),
            mandatory=("item_code", "item_group", "stock_uom"),
            naming="field:item_code",
            defaults={"disabled": 0, "is_stock_item": 1},
        ),
        DocTypeSpec(
            name="Sales Order",
            fields=(
                "customer", "customer_name", "transaction_date", "delivery_date", "company", "currency", "status",
                "total_qty", "grand_total", "items", "terms", "amended_from",
            ),
            mandatory=("customer", "transaction_date", "delivery_date", "items"),
            naming="series:SAL-ORD-{YYYY}-",
            links={"customer": "Customer", "amended_from": "Sales Order"},
            tables={"items": SALES_ORDER_ITEM},
            defaults={"currency": "EUR", "status": "Draft", "company": "Demo Company"},
            submittable=True,
            # ERPNext marks a few Sales Order fields "Allow on Submit"; `terms` stands for them here.
            allow_on_submit=("terms",),
            computed=("status",),
        ),
        DocTypeSpec(
            # A submittable doctype without child tables (ERPNext's Attendance): the bulk full sync's path for
            # documents with a docstatus.
            name="Attendance",
            fields=("employee_name", "attendance_date", "status", "remarks", "amended_from"),
            mandatory=("employee_name", "attendance_date"),
            naming="series:HR-ATT-",
            selects={"status": ("Present", "Absent", "On Leave", "Half Day")},
            links={"amended_from": "Attendance"},
            defaults={"status": "Present"},
            submittable=True,
        ),
        DocTypeSpec(
            # Fields added to a doctype on this site; the demo adds none, tests may (e.g. a custom Table field).
            name="Custom Field",
            fields=("dt", "fieldname", "fieldtype", "label", "options"),
            mandatory=("dt", "fieldname", "fieldtype"),
            naming="hash",
        ),
        DocTypeSpec(
            # The timeline entry rename_doc leaves ("renamed from X to Y", comment_type "Edit").
            name="Comment",
            fields=("comment_type", "reference_doctype", "reference_name", "content"),
            naming="hash",
        ),
        DocTypeSpec(
            name="Deleted Document",
            fields=("deleted_doctype", "deleted_name", "data", "restored", "new_name"),
            naming="hash",
            defaults={"restored": 0},
        ),
    )
}

CHILD_DOCTYPES: dict[str, tuple[str, str]] = {
    child.doctype: (spec.name, fieldname) for spec in SPECS.values() for fieldname, child in spec.tables.items()
}


def doctype_meta(
    doctype: str,
    fields: tuple[str, ...],
    tables: dict[str, ChildSpec],
    links: dict[str, str],
    *,
    selects: dict[str, tuple[str, ...]] | None = None,
    istable: bool = False,
    spec: DocTypeSpec | None = None,
) -> dict[str, object]:
    """What GET /api/resource/DocType/<doctype> answers: the DocType document with one DocField row per field."""
    rows: list[dict[str, object]] = []
    for idx, fieldname in enumerate(fields, start=1):
        if fieldname in tables:
            fieldtype, options = "Table", tables[fieldname].doctype
        elif fieldname in links:
            fieldtype, options = "Link", links[fieldname]
        elif selects and fieldname in selects:
            fieldtype, options = "Select", "\n".join(selects[fieldname])
        else:
            fieldtype, options = "Data", None
        rows.append({"doctype": "DocField", "parent": doctype, "parentfield": "fields", "parenttype": "DocType",
                     "idx": idx, "fieldname": fieldname, "fieldtype": fieldtype, "options": options,
                     "allow_on_submit": int(spec is not None and fieldname in spec.allow_on_submit),
                     "read_only": int(spec is not None and fieldname in spec.computed)})
    meta: dict[str, object] = {"doctype": "DocType", "name": doctype, "istable": int(istable), "fields": rows}
    if spec is not None:
        # Frappe's autoname: "field:<fieldname>", "naming_series:" (a series), "hash"
        meta["autoname"] = "naming_series:" if spec.naming.startswith("series:") else spec.naming
        meta["is_submittable"] = int(spec.submittable)
    return meta


def spec_for(doctype: str) -> DocTypeSpec:
    spec = SPECS.get(doctype)
    return spec if spec is not None else DocTypeSpec(name=doctype, known=False)
