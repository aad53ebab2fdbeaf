"""Signature and body rules, without a server."""

from __future__ import annotations

import json

import pytest

from erpsync_tui.sim.webhooks import sign_webhook, webhook_body
from erpsync_tui.webhooks.parsing import Rejected, decode_body, extract_event, parse_webhook, sign, signature_matches

SECRET = "s3cret-for-parsing"


def test_signature_matches_what_frappe_and_the_simulator_send() -> None:
    body = webhook_body("Customer", "CUST-1", "2024-05-01 10:00:00", "on_update")
    assert sign(body, SECRET) == sign_webhook(body, SECRET)
    assert signature_matches(body, sign_webhook(body, SECRET), SECRET)
    assert signature_matches(body, f"  {sign_webhook(body, SECRET)}\n", SECRET)  # header whitespace


@pytest.mark.parametrize("given", ["", "nope", "Zm9v", "é-not-ascii"])
def test_signature_mismatches(given: str) -> None:
    assert not signature_matches(b"{}", given, SECRET)


def test_signature_is_over_the_raw_bytes_not_the_parsed_json() -> None:
    body = json.dumps({"doctype": "Customer", "name": "A"}).encode()
    compact = json.dumps({"doctype": "Customer", "name": "A"}, separators=(",", ":")).encode()
    assert not signature_matches(compact, sign(body, SECRET), SECRET)


def test_non_ascii_body_is_signed_as_utf8() -> None:
    body = json.dumps({"doctype": "Customer", "name": "Müller GmbH"}, ensure_ascii=False).encode()
    assert signature_matches(body, sign(body, SECRET), SECRET)
    assert parse_webhook(body, {}).name == "Müller GmbH"


def test_numeric_names_and_modified_types_are_normalised() -> None:
    event = extract_event({"doctype": "Item", "name": 42, "modified": 1714557600}, {})
    assert (event.name, event.modified, event.event) == ("42", "1714557600", None)


def test_booleans_are_not_names() -> None:
    with pytest.raises(Rejected, match="missing `name`"):
        extract_event({"doctype": "Item", "name": True}, {})


def test_name_never_comes_from_the_query_string() -> None:
    with pytest.raises(Rejected, match="missing `name`"):
        extract_event({"doctype": "Item"}, {"name": "FROM-QUERY"})


def test_form_fields_without_json() -> None:
    assert decode_body(b"doctype=Customer&name=A%20B") == {"doctype": "Customer", "name": "A B"}


def test_rejections_carry_status_and_reason() -> None:
    with pytest.raises(Rejected) as info:
        decode_body(b"[]")
    assert (info.value.status, info.value.reason) == (400, "bad_body")
