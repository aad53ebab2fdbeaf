"""Properties of the document logic, checked over generated documents."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from erpsync_tui.engine.document_merge import (
    diff_documents,
    merge_rows,
    three_way_merge,
)
from erpsync_tui.engine.documents import (
    SYSTEM_FIELDS,
    content_hash,
    likeness,
    normalise,
)

FIELDS = ["customer", "qty", "rate", "notes", "status", "territory", "docstatus"]
ROW_FIELDS = ["item_code", "qty", "rate", "warehouse"]

scalars = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    st.text(max_size=12),
)
rows = st.dictionaries(st.sampled_from(ROW_FIELDS), scalars, max_size=4)
tables = st.lists(rows, min_size=1, max_size=4)
docs = st.dictionaries(
    st.sampled_from(FIELDS),
    scalars,
    max_size=len(FIELDS),
).flatmap(lambda d: st.one_of(st.just(d), tables.map(lambda t: {**d, "items": t})))
# A "site view": random system fields, random row names, rows listed in any order but with idx telling the truth.
system_values = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=8),
        "owner": st.text(max_size=8),
        "modified": st.text(max_size=26),
        "creation": st.text(max_size=26),
        "modified_by": st.text(max_size=8),
        "idx": st.integers(0, 5),
        "_seen": st.none() | st.just("[]"),
    }
)


def as_site_view(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    view = {**doc, **data.draw(system_values)}
    if "items" in doc:
        items = [
            {**row, "idx": i, "name": data.draw(st.text(min_size=1, max_size=6)), "parent": view["name"]}
            for i, row in enumerate(doc["items"], start=1)
        ]
        view["items"] = data.draw(st.permutations(items))
    return view


@settings(max_examples=200, deadline=None)
@given(doc=docs)
def test_normalise_is_idempotent(doc: dict[str, Any]) -> None:
    once = normalise(doc)
    assert normalise(once) == once
    assert content_hash(normalise(once)) == content_hash(once)


@settings(max_examples=200, deadline=None)
@given(doc=docs, data=st.data())
def test_hash_ignores_system_fields_row_names_and_order(doc: dict[str, Any], data: st.DataObject) -> None:
    a, b = as_site_view(doc, data), as_site_view(doc, data)
    assert content_hash(normalise(a)) == content_hash(normalise(b))
    assert not SYSTEM_FIELDS & normalise(a).keys()


@settings(max_examples=200, deadline=None)
@given(doc=docs, other=docs, excluded=st.sets(st.sampled_from(FIELDS + ROW_FIELDS), min_size=1), data=st.data())
def test_hash_ignores_excluded_fields(
    doc: dict[str, Any], other: dict[str, Any], excluded: set[str], data: st.DataObject
) -> None:
    # Overwrite the excluded fields of doc (top level and rows) with arbitrary values: the hash must not move.
    noisy = {**doc, **{k: v for k, v in other.items() if k in excluded}}
    if "items" in doc:
        noisy["items"] = [
            {**row, **{k: data.draw(scalars) for k in excluded & set(ROW_FIELDS)}} for row in doc["items"]
        ]
    assert content_hash(normalise(noisy, excluded)) == content_hash(normalise(doc, excluded))


@settings(max_examples=200, deadline=None)
@given(base=docs, ours=docs, theirs=docs)
def test_merge_is_symmetric(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    forward, backward = three_way_merge(base, ours, theirs), three_way_merge(base, theirs, ours)
    assert forward.merged == backward.merged
    assert forward.conflicting_fields == backward.conflicting_fields
    assert (forward.ours_changed, forward.theirs_changed) == (backward.theirs_changed, backward.ours_changed)


@settings(max_examples=200, deadline=None)
@given(base=docs, ours=docs, theirs=docs)
def test_merge_keeps_every_one_sided_change(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    result = three_way_merge(base, ours, theirs)
    n_ours, n_theirs = normalise(ours), normalise(theirs)
    for key in result.ours_changed - result.theirs_changed:
        assert key not in result.conflicting_fields
        if result.merged is not None:
            assert result.merged.get(key) == n_ours.get(key)
    for key in result.theirs_changed - result.ours_changed:
        assert key not in result.conflicting_fields
        if result.merged is not None:
            assert result.merged.get(key) == n_theirs.get(key)


@settings(max_examples=200, deadline=None)
@given(base=docs, ours=docs, theirs=docs)
def test_conflicts_are_exactly_divergent_two_sided_changes(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    result = three_way_merge(base, ours, theirs)
    n_ours, n_theirs = normalise(ours), normalise(theirs)
    both = result.ours_changed & result.theirs_changed
    n_base = normalise(base)
    # A child table changed on both sides still merges when its rows were edited apart (row-level merge).
    row_merged = {k for k in both
                  if all(v is None or isinstance(v, list) for v in (n_base.get(k), n_ours.get(k), n_theirs.get(k)))
                  and merge_rows(n_base.get(k), n_ours.get(k), n_theirs.get(k)) is not None}
    assert set(result.conflicting_fields) == {k for k in both if n_ours.get(k) != n_theirs.get(k)} - row_merged
    assert result.conflicting_fields == sorted(result.conflicting_fields)


@settings(max_examples=200, deadline=None)
@given(doc=docs, with_base=st.booleans(), data=st.data())
def test_diff_with_itself_is_all_same(doc: dict[str, Any], with_base: bool, data: st.DataObject) -> None:
    # Two site views of one document, with no base or with that document as base: nothing differs.
    diffs = diff_documents(as_site_view(doc, data), as_site_view(doc, data), doc if with_base else None)
    assert all(d.status == "same" and not d.differs for d in diffs)
    assert [d.field for d in diffs] == sorted(normalise(doc))


@given(doc=docs, other=docs)
def test_likeness_is_a_symmetric_share_that_is_one_for_equal_documents(doc: dict[str, Any], other: dict[str, Any]):
    """Lost creates are told apart by likeness: it must not depend on which copy is asked about."""
    a, b = normalise(doc), normalise(other)
    assert likeness(a, a) == 1.0
    assert likeness(a, b) == likeness(b, a)
    assert 0.0 <= likeness(a, b) <= 1.0
    assert (likeness(a, b) == 1.0) == (a == b)


@settings(max_examples=200, deadline=None)
@given(base=tables, ours=tables, theirs=tables)
def test_row_merge_is_symmetric_and_keeps_one_sided_tables(base, ours, theirs) -> None:
    forward, backward = merge_rows(base, ours, theirs), merge_rows(base, theirs, ours)
    assert forward == backward
    n_base, n_ours = normalise({"t": base}).get("t"), normalise({"t": ours}).get("t")
    if normalise({"t": theirs}).get("t") == n_base:
        assert forward == (n_ours or [])  # only one side moved: its table, exactly


@settings(max_examples=200, deadline=None)
@given(base=tables, data=st.data())
def test_edits_to_different_rows_always_merge(base, data: st.DataObject) -> None:
    """Each side edits its own rows in place: every edit survives, nothing conflicts."""
    rows = normalise({"t": base}).get("t") or []
    if len(rows) < 2:
        return
    split = data.draw(st.integers(1, len(rows) - 1))
    ours = [{**row, "qty": f"ours-{i}"} if i < split else row for i, row in enumerate(rows)]
    theirs = [{**row, "qty": f"theirs-{i}"} if i >= split else row for i, row in enumerate(rows)]
    merged = merge_rows(rows, ours, theirs)
    assert merged == ours[:split] + theirs[split:]
