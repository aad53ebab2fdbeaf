"""Error-body decoding and the mapping of Frappe failures onto the ERP001–ERP010 taxonomy (no network)."""

from __future__ import annotations

import json

import pytest

from erpsync_tui.connectors import (
    AuthenticationFailed,
    ConnectorError,
    DuplicateEntry,
    FieldMappingError,
    LinkValidationFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServerError,
    TimestampMismatch,
    ValidationFailed,
)
from erpsync_tui.connectors.frappe_wire import (
    ErrorBody,
    classify_error,
    decode_error_body,
    is_outage,
    parse_link_error,
    parse_retry_after,
    parse_unknown_field,
)
from erpsync_tui.errors import ErpSyncError, ErrorCode


def frappe_body(exc_type: str, *messages: str, **extra: str) -> str:
    inner = [json.dumps({"message": m, "title": "Message", "indicator": "red"}) for m in messages]
    return json.dumps({"exc_type": exc_type, "_server_messages": json.dumps(inner), **extra})


# --------------------------------------------------------------------------------------------- decoding


def test_decodes_string_of_list_of_strings() -> None:
    body = decode_error_body(frappe_body("LinkValidationError", "Could not find <b>Customer</b>: CUST-00042"))
    assert body.exc_type == "LinkValidationError"
    assert body.messages == ("Could not find Customer: CUST-00042",)


def test_html_in_messages_keeps_word_breaks() -> None:
    body = decode_error_body(frappe_body("ValidationError", "Row 1<br>Row&nbsp;2 <strong>bad</strong>"))
    assert body.messages == ("Row 1 Row 2 bad",)


@pytest.mark.parametrize(
    "server_messages, expected",
    [
        ("not json at all", ("not json at all",)),
        (json.dumps(["plain string, not json"]), ("plain string, not json",)),
        (json.dumps([{"message": "already an object"}]), ("already an object",)),
        (json.dumps([json.dumps({"title": "no message key"})]), ()),
        (json.dumps({"message": "a bare object"}), ("a bare object",)),
        (json.dumps([json.dumps({"message": "one"}), json.dumps({"message": "two"})]), ("one", "two")),
        ("", ()),
    ],
)
def test_server_messages_any_layer_may_be_off(server_messages: str, expected: tuple[str, ...]) -> None:
    body = decode_error_body(json.dumps({"exc_type": "ValidationError", "_server_messages": server_messages}))
    assert body.messages == expected


def test_error_message_and_exception_fallbacks() -> None:
    perm = decode_error_body(json.dumps({"exc_type": "PermissionError", "_error_message": "Insufficient Permission"}))
    assert perm.messages == ("Insufficient Permission",)
    exc_only = decode_error_body(
        json.dumps({"exc_type": "MandatoryError", "exception": "frappe.exceptions.MandatoryError: customer_name"})
    )
    assert exc_only.messages == ("customer_name",)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>", ("502 Bad Gateway",)),
        ("<html><body><h1>Request Entity Too Large</h1></body></html>", ("Request Entity Too Large",)),
        ("Too Many Requests", ("Too Many Requests",)),
        ("", ()),
        ("[1, 2", ("[1, 2",)),
        ("[1, 2]", ("[1, 2]",)),
    ],
)
def test_non_json_bodies(text: str, expected: tuple[str, ...]) -> None:
    body = decode_error_body(text)
    assert body.exc_type is None
    assert body.messages == expected


# --------------------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    "status, exc_type, cls, code, retryable",
    [
        (401, "AuthenticationError", AuthenticationFailed, ErrorCode.AUTHENTICATION, False),
        (401, None, AuthenticationFailed, ErrorCode.AUTHENTICATION, False),
        (400, "InvalidAuthorizationToken", AuthenticationFailed, ErrorCode.AUTHENTICATION, False),
        (403, "PermissionError", PermissionDenied, ErrorCode.AUTHENTICATION, False),
        (404, "DoesNotExistError", NotFound, ErrorCode.VALIDATION, False),
        (409, "DuplicateEntryError", DuplicateEntry, ErrorCode.VALIDATION, False),
        (417, "TimestampMismatchError", TimestampMismatch, ErrorCode.VALIDATION, False),
        (417, "MandatoryError", ValidationFailed, ErrorCode.VALIDATION, False),
        (417, "UpdateAfterSubmitError", ValidationFailed, ErrorCode.VALIDATION, False),
        (417, "DataError", FieldMappingError, ErrorCode.FIELD_MAPPING, False),
        (417, "RateLimitExceededError", RateLimited, ErrorCode.RATE_LIMIT, True),
        (429, None, RateLimited, ErrorCode.RATE_LIMIT, True),
        (408, None, RequestTimeout, ErrorCode.TIMEOUT, True),
        (500, None, ServerError, ErrorCode.CONNECTION, True),
        (502, None, ServerError, ErrorCode.CONNECTION, True),
        (503, "SessionStopped", ServerError, ErrorCode.CONNECTION, True),
        (504, None, ServerError, ErrorCode.CONNECTION, True),
        (501, None, ServerError, ErrorCode.CONNECTION, False),
        (413, None, ValidationFailed, ErrorCode.VALIDATION, False),
    ],
)
def test_taxonomy(status: int, exc_type: str | None, cls: type, code: ErrorCode, retryable: bool) -> None:
    error = classify_error("cloud", status, ErrorBody(exc_type, ("it failed",)), where="GET /api/x")
    assert type(error) is cls
    assert isinstance(error, ConnectorError)
    assert isinstance(error, ErpSyncError)
    assert error.code == code
    assert error.retryable is retryable
    assert error.status == status
    assert error.site == "cloud"
    assert error.quick_fix
    assert str(error).startswith(f"[{code}] cloud: GET /api/x → HTTP {status}")


def test_link_validation_names_the_missing_document() -> None:
    body = decode_error_body(frappe_body("LinkValidationError", "Could not find <b>Customer</b>: Café Nord / 2"))
    error = classify_error("local", 417, body)
    assert isinstance(error, LinkValidationFailed)
    assert isinstance(error, ValidationFailed)
    assert (error.link_doctype, error.link_name) == ("Customer", "Café Nord / 2")


@pytest.mark.parametrize(
    "message, expected",
    [
        ("Could not find Customer: CUST-00042", ("Customer", "CUST-00042")),
        ("Row #1: Could not find Item: ITEM-1", ("Item", "ITEM-1")),
        ("Could not find Sales Order: SAL-ORD-2026-00001", ("Sales Order", "SAL-ORD-2026-00001")),
        ("Could not find Customer: A: B", ("Customer", "A: B")),
        ("Something else", None),
    ],
)
def test_parse_link_error(message: str, expected: tuple[str, str] | None) -> None:
    assert parse_link_error([message]) == expected


@pytest.mark.parametrize(
    "message, field",
    [
        ("Field not permitted in query: colour", "colour"),
        ("(1054, \"Unknown column 'tabCustomer.colour' in 'where clause'\")", "colour"),
        ("Unknown column 'colour' in 'field list'", "colour"),
        ("Invalid field name: colour", "colour"),
        ("Unknown field: colour", "colour"),
        ("nothing to see", None),
    ],
)
def test_parse_unknown_field(message: str, field: str | None) -> None:
    assert parse_unknown_field([message]) == field


def test_unknown_column_500_is_a_field_mapping_error() -> None:
    body = ErrorBody("OperationalError", ("(1054, \"Unknown column 'colour' in 'where clause'\")",))
    error = classify_error("cloud", 500, body)
    assert isinstance(error, FieldMappingError)
    assert error.code == ErrorCode.FIELD_MAPPING
    assert error.field == "colour"
    assert not error.retryable


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_rate_limited_keeps_retry_after() -> None:
    error = classify_error("cloud", 429, decode_error_body("Too Many Requests"), retry_after=3.0)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0
    assert "Too Many Requests" in str(error)


def test_long_messages_are_clipped() -> None:
    error = classify_error("cloud", 417, ErrorBody("ValidationError", ("x" * 5000,)))
    assert len(error.message) <= 300


def test_outage_classification() -> None:
    def make(status: int) -> ConnectorError:
        return classify_error("s", status, ErrorBody(None, ()))

    assert is_outage(make(500)) and is_outage(make(503))
    assert not is_outage(make(417)) and not is_outage(make(429)) and not is_outage(make(404))
