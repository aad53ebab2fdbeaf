"""What goes over the wire to a Frappe site and what comes back: URLs, filters, error bodies, timestamps.

Pure functions, no I/O: the connector (frappe.py, frappe_http.py) uses them; so do tests.
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectorError,
    DuplicateEntry,
    FieldMappingError,
    Filters,
    LinkValidationFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServerError,
    TimestampMismatch,
    ValidationFailed,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
INSERT_MANY_MAX = 200  # frappe.client.insert_many refuses more in one call (§2)
TABLE_FIELDTYPES = ("Table", "Table MultiSelect")
MAX_MESSAGE_CHARS = 300
_REDACTED = "********"


# --------------------------------------------------------------------------------------------- URLs


def quote_segment(value: str) -> str:
    """One path segment, fully escaped: names may hold `/`, `#`, `&`, `?`, quotes, spaces, any script (§2).

    A name that is exactly "." or ".." is a dot segment to every URL normaliser (httpx collapses
    `/Item/..` to `/`), so its dots are percent-encoded too; Frappe decodes `%2E%2E` back to the name.
    """
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def resource_path(doctype: str, name: str | None = None) -> str:
    path = f"/api/resource/{quote_segment(doctype)}"
    return path if name is None else f"{path}/{quote_segment(name)}"


def normalize_filters(filters: Filters | None) -> list[list[Any]]:
    """Dict or list-of-lists filters (§3) → list-of-lists, so extra conditions can be appended."""
    if not filters:
        return []
    if isinstance(filters, Mapping):
        out: list[list[Any]] = []
        for field, value in filters.items():
            if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str):
                out.append([field, value[0], value[1]])
            else:
                out.append([field, "=", value])
        return out
    return [list(condition) for condition in filters]


# --------------------------------------------------------------------------------------------- error bodies


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What could be read from an error response; every part optional (§4: decode defensively)."""

    exc_type: str | None
    messages: tuple[str, ...]

    @property
    def text(self) -> str:
        return "; ".join(self.messages)


_BREAK_TAG = re.compile(r"</?(?:br|p|div|li|ul|ol|tr|td|th|h\d)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def _plain_text(value: str) -> str:
    """Frappe messages carry HTML (`<b>Customer</b>`); proxies send whole pages. Keep the words."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", _BREAK_TAG.sub(" ", value)))).strip()


def _loads(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _server_messages(raw: Any) -> list[str]:
    """`_server_messages`: a JSON string of a list of JSON strings of {"message": ...}; any layer may be off."""
    outer = _loads(raw)
    if outer is None and isinstance(raw, str):
        return [raw]
    items = outer if isinstance(outer, list) else [outer]
    messages = []
    for item in items:
        inner = _loads(item) if isinstance(item, str) else item
        if isinstance(inner, dict):
            value = inner.get("message")
            if value:
                messages.append(str(value))
        elif inner is not None:
            messages.append(str(inner))
        elif isinstance(item, str) and item:
            messages.append(item)
    return messages


def decode_error_body(text: str) -> ErrorBody:
    """Frappe's JSON error body, a proxy's HTML page or a plain-text line, reduced to exc_type + messages."""
    data = _loads(text) if text.strip() else None
    if not isinstance(data, dict):
        return ErrorBody(None, _non_json_message(text))
    exc_type = data.get("exc_type") if isinstance(data.get("exc_type"), str) else None
    messages = _server_messages(data["_server_messages"]) if data.get("_server_messages") else []
    for key in ("_error_message", "message"):
        if isinstance(data.get(key), str) and data[key]:
            messages.append(data[key])
    if not messages and isinstance(data.get("exception"), str):
        # "frappe.exceptions.LinkValidationError: Could not find ..." → the part after the class name.
        messages.append(data["exception"].split(": ", 1)[-1])
    cleaned = tuple(dict.fromkeys(m for m in (_plain_text(m) for m in messages) if m))
    return ErrorBody(exc_type, cleaned)


def _non_json_message(text: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    title = _TITLE.search(text)
    plain = _plain_text(title.group(1) if title else text)
    return (plain,) if plain else ()


# --------------------------------------------------------------------------------------------- mapping

_LINK = re.compile(r"Could not find (?:Row #\d+:\s*)?([^:]+?):\s*(.+?)\s*$")
_UNKNOWN_FIELD = (
    re.compile(r"Unknown column '(?:[^'.]+\.)?`?([^'`]+)`?'"),
    re.compile(r"Field not permitted in query:?\s*`?([\w.-]+)`?", re.IGNORECASE),
    re.compile(r"Invalid field(?: name)?:?\s*`?([\w.-]+)`?", re.IGNORECASE),
    re.compile(r"Unknown field:?\s*['`\"]?([\w.-]+)", re.IGNORECASE),
    re.compile(r"no (?:such )?field (?:named )?['`\"]?([\w.-]+)", re.IGNORECASE),
)
_AUTH_TYPES = frozenset({"AuthenticationError", "SessionExpired", "InvalidAuthorizationToken", "CSRFTokenError"})
_DUPLICATE_TYPES = frozenset({"DuplicateEntryError", "UniqueValidationError", "NameError"})
_RATE_TYPES = frozenset({"TooManyRequestsError", "RateLimitExceededError"})


def parse_link_error(messages: Sequence[str]) -> tuple[str, str] | None:
    """("Customer", "CUST-00042") from "Could not find Customer: CUST-00042" (HTML already stripped)."""
    for message in messages:
        if match := _LINK.search(message):
            return match.group(1).strip(), match.group(2)
    return None


def parse_unknown_field(messages: Sequence[str]) -> str | None:
    for message in messages:
        for pattern in _UNKNOWN_FIELD:
            if match := pattern.search(message):
                return match.group(1)
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify_error(
    site: str,
    status: int,
    body: ErrorBody,
    *,
    where: str = "",
    retry_after: float | None = None,
) -> ConnectorError:
    """One HTTP error → the connector error that names it: by `exc_type` first (it is precise), then status."""
    exc_type = body.exc_type
    detail = body.text or _reason(status)
    message = _clip(f"{where} → HTTP {status}{f' {exc_type}' if exc_type else ''}: {detail}".strip())
    common: dict[str, Any] = {"site": site, "status": status, "exc_type": exc_type}
    validation: dict[str, Any] = {**common, "messages": body.messages}

    if status == 429 or exc_type in _RATE_TYPES:
        return RateLimited(message, retry_after=retry_after, **common)
    if exc_type in _AUTH_TYPES or status == 401:
        return AuthenticationFailed(message, **common)
    if exc_type == "PermissionError" or status == 403:
        return PermissionDenied(_permission_message(message, where), permission=_permission_for(where),
                                doctype=_doctype_in(where), **common)
    if exc_type == "DoesNotExistError" or status == 404:
        return NotFound(message, **common)
    if exc_type == "TimestampMismatchError":
        return TimestampMismatch(message, **validation)
    if exc_type == "LinkValidationError":
        link = parse_link_error(body.messages)
        return LinkValidationFailed(
            message, link_doctype=link[0] if link else None, link_name=link[1] if link else None, **validation
        )
    if exc_type in _DUPLICATE_TYPES or status == 409:
        return DuplicateEntry(message, **validation)
    field = parse_unknown_field(body.messages)
    if exc_type == "DataError" or (field is not None and (status >= 500 or status in (400, 417))):
        # Real Frappe surfaces an unknown column from MariaDB as a 500 OperationalError; still a mapping fault.
        return FieldMappingError(message, field=field, **validation)
    if status == 408:
        return RequestTimeout(message, **common)
    if status >= 500:
        return ServerError(message, retryable=status in RETRYABLE_STATUSES, **common)
    if 400 <= status < 500:
        return ValidationFailed(message, **validation)
    return ConnectorError(message, **common)


_PERMISSION_BY_METHOD = {"GET": "read", "POST": "create", "PUT": "write", "DELETE": "delete"}


def _permission_for(where: str) -> str | None:
    """The Frappe permission a request needs: GET read, POST create, PUT write, DELETE delete."""
    return _PERMISSION_BY_METHOD.get(where.split(" ", 1)[0].upper()) if where else None


def _doctype_in(where: str) -> str | None:
    """The doctype of a /api/resource/<Doctype>[/<name>] request, or None."""
    path = where.split(" ", 1)[1] if " " in where else ""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[1:3] == ["api", "resource"]:
        from urllib.parse import unquote

        return unquote(parts[3])
    return None


def _permission_message(message: str, where: str) -> str:
    permission, doctype = _permission_for(where), _doctype_in(where)
    if permission and doctype:
        return _clip(f"the API user lacks the '{permission}' permission on {doctype}: {message}")
    return message


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def is_outage(exc: BaseException) -> bool:
    """Does this failure say the site is down (counts for the circuit breaker), rather than "it said no"?"""
    if isinstance(exc, ConnectionFailed | RequestTimeout):
        return True
    return isinstance(exc, ServerError) and exc.status is not None and exc.status >= 500


# --------------------------------------------------------------------------------------------- timestamps


def parse_timestamp(value: str, zone: str) -> datetime:
    """A site's naive `modified`/`creation` string (§5, in the site's zone) → an aware UTC datetime."""
    return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def format_timestamp(moment: datetime, zone: str) -> str:
    """An aware datetime → the site's own naive "YYYY-MM-DD HH:MM:SS.ffffff" in its zone."""
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def name_chunks(names: Sequence[str], max_chars: int = 3000) -> list[list[str]]:
    """Names for `name in` filters, in chunks whose JSON stays well inside a URL."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for name in names:
        cost = len(json.dumps(name)) + 1
        if current and size + cost > max_chars:
            chunks.append(current)
            current, size = [], 0
        current.append(name)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


def _normalized_order(order_by: str) -> str:
    return " ".join(order_by.lower().split())
