"""Examples for the pure document logic: normal form, hash, merge, diff, timestamps, policies, payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from erpsync_tui.engine.document_merge import (
    FieldDiff,
    MergeResult,
    align_rows,
    apply_resolution,
    diff_child_rows,
    diff_documents,
    merge_rows,
    resolve_rows,
    text_line_diff,
    three_way_merge,
)
from erpsync_tui.engine.documents import (
    changed_fields,
    content_hash,
    decide,
    format_frappe_timestamp,
    normalise,
    parse_frappe_timestamp,
    to_write_payload,
)


def sales_order(site: str = "cloud", **overrides: object) -> dict:
    """A Sales Order as a Frappe site returns it, with site-specific system fields and row names."""
    doc = {
        "name": f"SAL-ORD-2026-0000{1 if site == 'cloud' else 7}",
        "owner": f"sync@{site}",
        "creation": "2026-01-02 09:00:00.000000",
        "modified": f"2026-01-02 10:00:00.{123456 if site == 'cloud' else 654321}",
        "modified_by": f"admin@{site}",
        "docstatus": 0,
        "idx": 0,
        "doctype": "Sales Order",
        "_user_tags": None,
        "_liked_by": "[]" if site == "cloud" else None,
        "customer": "ACME",
        "transaction_date": "2026-01-02",
        "grand_total": 150.0,
        "items": [
            {
                "name": f"{site}-row-a",
                "parent": f"SAL-ORD-{site}",
                "parentfield": "items",
                "parenttype": "Sales Order",
                "idx": 1,
                "doctype": "Sales Order Item",
                "docstatus": 0,
                "owner": f"sync@{site}",
                "item_code": "WIDGET",
                "qty": 1.0,
                "rate": 100.0,
            },
            {
                "name": f"{site}-row-b",
                "parent": f"SAL-ORD-{site}",
                "parentfield": "items",
                "parenttype": "Sales Order",
                "idx": 2,
                "doctype": "Sales Order Item",
                "item_code": "GADGET",
                "qty": 1,
                "rate": 50,
            },
        ],
    }
    doc.update(overrides)
    return doc


# --------------------------------------------------------------------------------------------- normalise / hash


def test_same_order_on_two_sites_has_one_hash() -> None:
    assert content_hash(normalise(sales_order("cloud"))) == content_hash(normalise(sales_order("local")))


def test_normal_form_drops_system_fields_but_keeps_docstatus() -> None:
    norm = normalise(sales_order())
    assert norm == {
        "customer": "ACME",
        "docstatus": 0,
        "grand_total": 150,
        "items": [{"item_code": "WIDGET", "qty": 1, "rate": 100}, {"item_code": "GADGET", "qty": 1, "rate": 50}],
        "transaction_date": "2026-01-02",
    }
    assert content_hash(norm) != content_hash(normalise(sales_order(docstatus=1)))


def test_excluded_fields_ignored_at_top_level_and_in_rows() -> None:
    cloud = sales_order(territory="North")
    local = sales_order("local", territory="South")
    local["items"][0]["warehouse"] = "Stores - L"
    cloud["items"][0]["warehouse"] = "Stores - C"
    assert normalise(cloud) != normalise(local)
    excluded = ["territory", "warehouse"]
    assert content_hash(normalise(cloud, excluded)) == content_hash(normalise(local, excluded))


def test_child_rows_ordered_by_idx_and_row_names_ignored() -> None:
    shuffled = sales_order("local")
    shuffled["items"].reverse()  # still idx 1, 2 — given order must not matter
    for row in shuffled["items"]:
        row["name"] = row["name"].upper()
    assert normalise(shuffled) == normalise(sales_order())


def test_rows_without_idx_keep_given_order() -> None:
    doc = {"items": [{"item_code": "B"}, {"item_code": "A", "idx": 1}]}
    assert [r["item_code"] for r in normalise(doc)["items"]] == ["B", "A"]


def test_null_empty_and_absent_are_the_same() -> None:
    base = {"customer": "ACME"}
    for empty in (None, "", []):
        assert normalise({"customer": "ACME", "notes": empty}) == normalise(base)
    assert changed_fields(base, {"customer": "ACME", "notes": None}) == set()


def test_numbers_compare_by_value() -> None:
    assert normalise({"qty": 10.0, "rate": 2.50, "flag": True}) == normalise({"qty": 10, "rate": 2.5, "flag": 1})
    assert normalise({"total": 0.1 + 0.2}) == normalise({"total": 0.3})
    assert normalise({"qty": "10"}) != normalise({"qty": 10})  # strings are not numbers


def test_strings_kept_exactly() -> None:
    assert normalise({"customer": " ACME"}) != normalise({"customer": "ACME"})


def test_non_finite_numbers_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        normalise({"qty": float("nan")})


def test_normalise_is_json_serialisable_and_deterministic() -> None:
    norm = normalise(sales_order())
    assert list(norm) == sorted(norm)
    assert content_hash(norm) == content_hash(normalise(sales_order()))


def test_changed_fields_counts_child_table_once() -> None:
    base = sales_order()
    current = sales_order("local", customer="Globex")
    current["items"][1]["qty"] = 3
    current["items"][0]["rate"] = 90
    assert changed_fields(base, current) == {"customer", "items"}
    assert changed_fields(None, {"customer": "A", "name": "x"}) == {"customer"}


# --------------------------------------------------------------------------------------------- merge


def test_disjoint_changes_merge() -> None:
    base = sales_order()
    ours = sales_order(customer="Globex")
    theirs = sales_order("local", transaction_date="2026-02-01")
    result = three_way_merge(base, ours, theirs)
    assert result.conflicting_fields == []
    assert result.merged is not None
    assert result.merged["customer"] == "Globex"
    assert result.merged["transaction_date"] == "2026-02-01"
    assert result.ours_changed == {"customer"}
    assert result.theirs_changed == {"transaction_date"}


def test_identical_changes_are_not_a_conflict() -> None:
    base = {"customer": "ACME"}
    result = three_way_merge(base, {"customer": "Globex"}, {"customer": "Globex"})
    assert result == MergeResult({"customer": "Globex"}, [], {"customer"}, {"customer"})


def test_conflicting_changes() -> None:
    base = {"customer": "ACME", "b": 1, "a": 1}
    result = three_way_merge(base, {"customer": "Globex", "b": 2, "a": 2}, {"customer": "Initech", "b": 3, "a": 1})
    assert result.merged is None
    assert result.conflicting_fields == ["b", "customer"]
    assert not result.clean


def test_delete_vs_edit_conflicts_and_delete_alone_wins() -> None:
    base = {"customer": "ACME", "notes": "call first"}
    edit = {"customer": "ACME", "notes": "call after 5"}
    cleared = {"customer": "ACME", "notes": None}
    assert three_way_merge(base, cleared, edit).conflicting_fields == ["notes"]
    result = three_way_merge(base, cleared, base)
    assert result.merged == {"customer": "ACME"}
    assert result.ours_changed == {"notes"}


def test_child_rows_edited_apart_merge_row_by_row() -> None:
    base = sales_order()
    ours = sales_order()
    ours["items"][0]["qty"] = 5
    theirs = sales_order("local")
    theirs["items"][1]["qty"] = 7
    result = three_way_merge(base, ours, theirs)
    assert result.conflicting_fields == []
    assert [row["qty"] for row in result.merged["items"]] == [5, 7]


def test_the_same_child_row_changed_on_both_sides_is_a_conflict() -> None:
    base = sales_order()
    ours = sales_order()
    ours["items"][0]["qty"] = 5
    theirs = sales_order("local")
    theirs["items"][0]["rate"] = 9  # another field, but the same row: the row conflicts
    assert three_way_merge(base, ours, theirs).conflicting_fields == ["items"]
    hunks = align_rows(normalise(base)["items"], normalise(ours)["items"], normalise(theirs)["items"])
    assert [h.status for h in hunks] == ["conflict", "same"]
    assert hunks[0].single_row and {d.field for d in hunks[0].row_fields() if d.differs} == {"qty", "rate"}
    # Per-field picks inside the row give both edits; a whole-row pick gives one side's row.
    both = resolve_rows(hunks, {0: {"qty": "cloud", "rate": "local"}})
    assert (both[0]["qty"], both[0]["rate"]) == (5, 9)
    assert resolve_rows(hunks, {0: "local"})[0]["qty"] != 5
    with pytest.raises(ValueError, match="row 1"):
        resolve_rows(hunks, {})


def test_rows_added_and_removed_align_by_content() -> None:
    rows = [{"item_code": f"I{i}", "qty": i} for i in range(1, 7)]
    ours = rows[:2] + rows[3:] + [{"item_code": "NEW-C", "qty": 1}]  # cloud drops row 3, appends a row
    theirs = [dict(r) for r in rows]
    theirs[4]["qty"] = 50  # local edits row 5
    merged = merge_rows(rows, ours, theirs)
    assert merged is not None
    assert [r["item_code"] for r in merged] == ["I1", "I2", "I4", "I5", "I6", "NEW-C"]
    assert merged[3]["qty"] == 50
    # Rows added at the same place on both sites: a conflict whose "both" pick keeps them all.
    cloud_add, local_add = [*rows, {"item_code": "C", "qty": 1}], [*rows, {"item_code": "L", "qty": 1}]
    assert merge_rows(rows, cloud_add, local_add) is None
    hunks = align_rows(rows, cloud_add, local_add)
    added = next(h for h in hunks if h.status == "conflict")
    assert added.added_on_both
    assert [r["item_code"] for r in resolve_rows(hunks, {added.index: "both"})][-2:] == ["C", "L"]


def test_merge_without_base() -> None:
    result = three_way_merge(None, {"a": 1, "b": 2}, {"a": 1, "c": 3})
    assert result.merged == {"a": 1, "b": 2, "c": 3}
    assert three_way_merge(None, {"a": 1}, {"a": 2}).conflicting_fields == ["a"]


# --------------------------------------------------------------------------------------------- diff


def test_diff_statuses_and_ordering() -> None:
    base = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    cloud = {"a": 1, "b": 2, "c": 1, "d": 4, "e": 9}
    local = {"a": 1, "b": 1, "c": 3, "d": 5, "e": 9}
    diffs = diff_documents(cloud, local, base)
    assert [(d.field, d.status) for d in diffs] == [
        ("b", "cloud_changed"),
        ("c", "local_changed"),
        ("d", "conflict"),
        ("a", "same"),
        ("e", "both_changed"),
    ]
    assert diffs[0] == FieldDiff("b", 2, 1, 1, "cloud_changed")


def test_diff_without_base() -> None:
    diffs = diff_documents({"a": 1, "b": 2, "c": 1}, {"a": 1, "b": 3, "d": 1}, None)
    assert [(d.field, d.status) for d in diffs] == [
        ("b", "conflict"),
        ("c", "cloud_changed"),
        ("d", "local_changed"),
        ("a", "same"),
    ]


def test_diff_ignores_system_fields_and_flags_tables() -> None:
    diffs = diff_documents(sales_order(), sales_order("local"), None)
    assert all(d.status == "same" for d in diffs)
    assert {d.field for d in diffs if d.is_child_table} == {"items"}


def test_child_row_diff_by_position() -> None:
    cloud = sales_order()["items"]
    local = sales_order("local")["items"]
    local[1]["qty"] = 4
    local.append({"name": "x", "idx": 3, "item_code": "NEW", "qty": 1})
    rows = diff_child_rows(cloud, local)
    assert [(r.position, r.status, r.changed_fields) for r in rows] == [
        (1, "same", []),
        (2, "changed", ["qty"]),
        (3, "local_only", ["item_code", "qty"]),
    ]
    assert rows[2].cloud_row is None
    assert diff_child_rows(local, cloud)[2].status == "cloud_only"


def test_long_text_line_diff() -> None:
    a = "line one\nline two\nline three"
    b = "line one\nline 2\nline three"
    lines = text_line_diff(a, b)
    assert lines[:2] == ["--- cloud", "+++ local"]
    assert "-line two" in lines and "+line 2" in lines
    assert text_line_diff(a, a) == []
    long = FieldDiff("notes", "x" * 81, "y", None, "conflict")
    assert long.is_long_text
    assert not FieldDiff("notes", "x" * 80, "y", None, "conflict").is_long_text


# --------------------------------------------------------------------------------------------- timestamps


def test_parse_across_zones() -> None:
    kolkata = parse_frappe_timestamp("2026-01-02 15:30:00.000000", "Asia/Kolkata")
    utc = parse_frappe_timestamp("2026-01-02 10:00:00", "UTC")
    assert kolkata == utc  # IST is UTC+05:30
    assert kolkata.utcoffset() == timedelta(hours=5, minutes=30)
    assert parse_frappe_timestamp("2026-01-02 10:00:00.5", "UTC").microsecond == 500000


def test_format_round_trip() -> None:
    dt = datetime(2026, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_frappe_timestamp(dt, "Asia/Kolkata") == "2026-01-02 15:30:00.123456"
    assert parse_frappe_timestamp(format_frappe_timestamp(dt, "America/New_York"), "America/New_York") == dt


@pytest.mark.parametrize("bad", ["2026-01-02", "2026-01-02T10:00:00+00:00", "yesterday", ""])
def test_parse_rejects_other_shapes(bad: str) -> None:
    with pytest.raises(ValueError, match="Frappe timestamp"):
        parse_frappe_timestamp(bad, "UTC")


def test_timestamp_errors() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_frappe_timestamp("2026-01-02 10:00:00", "Mars/Olympus")
    with pytest.raises(ValueError, match="aware"):
        format_frappe_timestamp(datetime(2026, 1, 2), "UTC")


# --------------------------------------------------------------------------------------------- policy


SIDES = ("cloud", "local")


def test_latest_timestamp_compares_across_zones() -> None:
    # Local's clock reads later, but 15:00 in Kolkata is 09:30 UTC — cloud's 10:00 UTC is newer.
    modified = {
        "cloud": parse_frappe_timestamp("2026-01-02 10:00:00", "UTC"),
        "local": parse_frappe_timestamp("2026-01-02 15:00:00", "Asia/Kolkata"),
    }
    assert decide("latest_timestamp", sides=SIDES, modified=modified) == "cloud"
    modified["local"] += timedelta(hours=1)
    assert decide("latest_timestamp", sides=SIDES, modified=modified) == "local"


def test_latest_timestamp_tie_goes_to_first_site() -> None:
    same = datetime(2026, 1, 2, tzinfo=UTC)
    assert decide("latest_timestamp", sides=SIDES, modified={"cloud": same, "local": same}) == "cloud"
    assert decide("latest_timestamp", sides=("local", "cloud"), modified={"cloud": same, "local": same}) == "local"


def test_site_wins_and_manual() -> None:
    assert decide("local_wins", sides=SIDES, modified={}) == "local"
    assert decide("cloud_wins", sides=SIDES, modified={}) == "cloud"
    assert decide("manual", sides=SIDES, modified={}) is None


def test_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown conflict policy"):
        decide("elsewhere_wins", sides=SIDES, modified={})
    with pytest.raises(ValueError, match="aware"):
        decide("latest_timestamp", sides=SIDES, modified={"cloud": datetime(2026, 1, 1), "local": datetime(2026, 1, 1)})
    with pytest.raises(ValueError, match="local"):
        decide("latest_timestamp", sides=SIDES, modified={"cloud": datetime(2026, 1, 1, tzinfo=UTC)})


# --------------------------------------------------------------------------------------------- resolution / payload


def test_apply_resolution_takes_choices_and_merged_values() -> None:
    base = {"customer": "ACME", "notes": "n", "qty": 1, "rate": 1}
    cloud = {"customer": "Globex", "notes": "cloud note", "qty": 2, "rate": 1}
    local = {"customer": "Initech", "notes": "local note", "qty": 1, "rate": 3}
    resolved = apply_resolution(base, cloud, local, {"customer": "local", "notes": ("value", "merged note")})
    assert resolved == {"customer": "Initech", "notes": "merged note", "qty": 2, "rate": 3}


def test_apply_resolution_can_clear_and_override() -> None:
    base = {"a": 1, "b": 1}
    resolved = apply_resolution(base, {"a": 2, "b": 1}, {"a": 3, "b": 5}, {"a": ("value", None), "b": "cloud"})
    assert resolved == {"b": 1}


def test_apply_resolution_lists_unresolved_conflicts() -> None:
    base = {"a": 1, "b": 1, "c": 1}
    with pytest.raises(ValueError, match="unresolved conflicting fields: a, c"):
        apply_resolution(base, {"a": 2, "b": 1, "c": 2}, {"a": 3, "b": 1, "c": 3}, {})
    with pytest.raises(ValueError, match="choice must be"):
        apply_resolution(base, base, base, {"a": "theirs"})


def test_write_payload_strips_row_names_and_clears_removed_fields() -> None:
    update = normalise(sales_order())
    target = normalise(sales_order("local", notes="old", taxes=[{"name": "t1", "idx": 1, "rate": 5}]))
    payload = to_write_payload(update, target, expected_modified="2026-01-02 10:00:00.654321")
    assert payload["notes"] is None
    assert payload["taxes"] == []
    assert payload["modified"] == "2026-01-02 10:00:00.654321"
    assert all("name" not in row and "idx" not in row for row in payload["items"])
    assert "name" not in payload and "owner" not in payload
    assert payload["docstatus"] == 0


def test_write_payload_from_raw_doc_has_no_system_fields() -> None:
    payload = to_write_payload(sales_order())
    assert set(payload) == {"customer", "docstatus", "grand_total", "items", "transaction_date"}
    assert set(payload["items"][0]) == {"item_code", "qty", "rate"}
