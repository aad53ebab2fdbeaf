"""Verifying and decoding Frappe's outgoing webhooks (see docs: frappe-rest-api.md §7).

Pure functions over bytes, so every rule here is unit-testable without a server. Frappe signs the raw body
as base64(HMAC-SHA256(secret, body)); nothing else (query string, headers) is signed, so values from the
body always win over query parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"
MAX_NAME_LENGTH = 140  # Frappe's `name` column is varchar(140); longer values are not document names


class Rejected(Exception):
    """A request the receiver refuses: HTTP status, a metric label, and a message for the caller and the log."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    doctype: str
    name: str
    event: str | None
    modified: str | None


# ------------------------------------------------------------------------------------------ signature


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def signature_matches(body: bytes, given: str, secret: str) -> bool:
    """Constant-time comparison of the header value with the signature we compute over the raw body."""
    try:
        given_bytes = given.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(sign(body, secret).encode("ascii"), given_bytes)


# ------------------------------------------------------------------------------------------ body


def _bad_body(message: str) -> Rejected:
    return Rejected(400, "bad_body", message)


def decode_body(body: bytes) -> dict[str, Any]:
    """JSON object first; Frappe often sends no Content-Type, so form decoding is the fallback, not a header."""
    if not body.strip():
        raise _bad_body("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_body("body is not valid UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _form_fields(text)
    if not isinstance(data, dict):
        raise _bad_body(f"JSON body must be an object, got {_json_type(data)}")
    return data


def _form_fields(text: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _bad_body("body is neither a JSON object nor form-encoded fields") from None
    fields: dict[str, Any] = dict(pairs)
    if "data" not in fields:
        return fields
    # Frappe's "Form URL-Encoded" mode may wrap the whole JSON document in one `data` field.
    try:
        inner = json.loads(fields["data"])
    except json.JSONDecodeError:
        raise _bad_body("form field `data` is not JSON") from None
    if not isinstance(inner, dict):
        raise _bad_body(f"form field `data` must hold a JSON object, got {_json_type(inner)}")
    return inner


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _text(value: Any) -> str | None:
    """A usable identifier: a non-empty string (numbers allowed, Frappe autonames can look numeric)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        text = str(value).strip()
        return text or None
    return None


def _identifier(data: Mapping[str, Any], query: Mapping[str, str], key: str) -> str:
    value = _text(data.get(key)) or _text(query.get(key))
    if value is None:
        where = "in the body or as ?doctype=" if key == "doctype" else "in the body"
        raise _bad_body(f"missing `{key}` ({where})")
    if len(value) > MAX_NAME_LENGTH:
        raise _bad_body(f"`{key}` is longer than {MAX_NAME_LENGTH} characters")
    return value


def extract_event(data: Mapping[str, Any], query: Mapping[str, str]) -> WebhookEvent:
    """The document the webhook is about. `name` must come from the signed body; doctype/event may be query params."""
    doctype = _identifier(data, query, "doctype")
    name = _identifier(data, {}, "name")
    event = _text(data.get("event")) or _text(query.get("event"))
    modified = data.get("modified")
    return WebhookEvent(
        doctype=doctype,
        name=name,
        event=event[:MAX_NAME_LENGTH] if event else None,
        modified=str(modified)[:64] if modified not in (None, "") else None,
    )


def parse_webhook(body: bytes, query: Mapping[str, str]) -> WebhookEvent:
    return extract_event(decode_body(body), query)
