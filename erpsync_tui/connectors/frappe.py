"""The Frappe / ERPNext REST (v1) connector.

Facts about Frappe's API relied on here are in shared/reference/frappe-rest-api.md; section numbers (§) below
point into it. One `FrappeConnector` per site owns one keep-alive `httpx.AsyncClient` and, in front of it:

    not-before gate (a 429's Retry-After, shared) → circuit breaker → semaphore (max_concurrency)
    → rate limiter (requests_per_second) → HTTP → error mapping → tenacity retries for transient failures

Incremental pull — watermark semantics (`list_documents(modified_since=W)`):
    rows come back with `modified >= W`, ordered `modified asc, name asc`. `>=` rather than `>` because several
    documents can share one `modified` value and a pull can end between them; the rows at exactly W that the
    caller already processed are dropped by passing their names as `seen_at_watermark`. The caller's next
    watermark is the last `modified` it processed, and the next `seen_at_watermark` the names it processed at
    that value. Rows at W that are not in the set are yielded again: a re-delivery is harmless (the engine
    compares `modified`), a miss is not. Inside one pull, paging is keyset-style (each page starts at the last
    `modified` seen, not at an offset) so that documents edited while we page cannot shift rows past us.
    The timestamps are the site's own naive strings, compared as strings by the site; never mix two sites'.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import html
import json
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

import certifi
import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors.base import (
    DEFAULT_ORDER,
    AuthenticationFailed,
    CircuitOpen,
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
from erpsync_tui.connectors.circuit import CircuitBreaker

log = logging.getLogger("erpsync.connector")

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


# --------------------------------------------------------------------------------------------- connector


@dataclass(slots=True)
class ConnectorStats:
    requests: int = 0  # HTTP requests sent (retries included)
    failures: int = 0  # requests that ended in an error
    retries: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    last_latency_ms: float | None = None
    last_status: int | None = None
    last_error_code: str | None = None


class _Credentials(Protocol):
    api_key: str
    api_secret: str


class FrappeConnector:
    """A Frappe/ERPNext site over REST v1 with token auth. Use one per site, `aclose()` it (or `async with`)."""

    def __init__(
        self,
        site: str,
        config: SiteConfig,
        api_key: str,
        api_secret: str,
        *,
        circuit: CircuitBreaker | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.site = site
        self.config = config
        self.circuit = circuit or CircuitBreaker(config.circuit_failure_threshold, config.circuit_reset_seconds)
        self.stats = ConnectorStats()
        self._secrets = tuple(s for s in (f"{api_key}:{api_secret}", api_secret) if s)
        self._max_retries = max_retries
        self._backoff_max = backoff_max
        self._backoff = wait_random_exponential(multiplier=backoff_base, max=backoff_max)  # full jitter
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._limiter = _limiter(config.requests_per_second)
        self._not_before = 0.0  # time.monotonic() before which no request goes out (set by a 429)
        # Not one pooled AsyncClient but one single-connection client per slot, handed out from a queue:
        # httpcore's pool re-checks every connection under an anyio lock on each request, and its throughput
        # falls as concurrency rises (encode/httpx#3215 — measured here: 167 req/s at 32 connections against
        # 550 req/s with this layout). Keep-alive, timeouts and TLS settings are the same for every client.
        self._headers = {"Authorization": f"token {api_key}:{api_secret}", "Accept": "application/json"}
        self._verify = _tls_verify(config)
        self._transport = transport
        self._clients: list[httpx.AsyncClient] = []
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._closing: set[asyncio.Task[None]] = set()  # retired clients being closed (see _give_back)

    def _new_client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self._headers,
            timeout=httpx.Timeout(self.config.timeout_seconds),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            verify=self._verify,
            transport=self._transport,
            follow_redirects=False,
        )
        self._clients.append(client)
        return client

    async def _take_client(self) -> httpx.AsyncClient:
        """A free client; called under the semaphore, so there is one free or room for a new one."""
        if self._free.empty() and len(self._clients) < self.config.max_concurrency:
            return self._new_client()
        return await self._free.get()

    def __repr__(self) -> str:  # never show the credentials
        return f"FrappeConnector(site={self.site!r}, url={self.config.base_url!r})"

    async def __aenter__(self) -> FrappeConnector:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def circuit_state(self) -> str:
        """closed, half_open, open — or auth_refused: the circuit opened because the site answered 401 to
        everything (a revoked or changed key), an outage of this site like any other, but one a person must fix."""
        state = self.circuit.state
        if state != "closed" and self.circuit.reason == "auth":
            return "auth_refused"
        return state

    @property
    def timezone(self) -> str:
        return self.config.timezone

    # ----------------------------------------------------------------------------------------- API

    async def whoami(self) -> str:
        user = await self._call_method("GET", "frappe.auth.get_logged_user")
        if not user or user == "Guest":
            # The header was not taken as a login (e.g. stripped by a proxy): the request ran as Guest (§1).
            raise self._logged(AuthenticationFailed("the site treats these credentials as Guest", site=self.site))
        return str(user)

    async def get(self, doctype: str, name: str) -> dict[str, Any] | None:
        try:
            body = await self._request("GET", resource_path(doctype, name))
        except NotFound:
            return None
        return self._document(body, f"GET {doctype} {name}")

    async def insert(self, doctype: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        # Not idempotent: retried only when the site surely did not process it (see _should_retry).
        body = await self._request("POST", resource_path(doctype), json=dict(doc), idempotent=False)
        return self._document(body, f"POST {doctype}")

    async def insert_many(self, doctype: str, docs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Insert up to INSERT_MANY_MAX documents in one request (`frappe.client.insert_many`, §2); their names.

        Frappe runs the whole call in one request transaction: an error answer means none was inserted. The
        names come back in insertion order in current Frappe (older versions returned a set), so callers should
        pair names with documents by content, not by position alone. Like `insert`, never blindly retried.
        """
        if len(docs) > INSERT_MANY_MAX:
            raise ValueError(f"insert_many takes at most {INSERT_MANY_MAX} documents, not {len(docs)}")
        body = {"docs": json.dumps([{**doc, "doctype": doctype} for doc in docs], default=str)}
        answer = await self._request("POST", "/api/method/frappe.client.insert_many", json=body, idempotent=False)
        names = answer.get("message") if isinstance(answer, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self._logged(ConnectorError(f"insert_many {doctype}: the answer holds no list of names",
                                              site=self.site))
        return names

    async def rows_by_name(
        self, doctype: str, names: Sequence[str], *, fields: Sequence[str] = ("*",)
    ) -> dict[str, dict[str, Any]]:
        """The list rows of these documents, by name; a name the site does not have is left out.

        One list request per chunk of names (`name in`, the chunk's JSON kept well inside a URL), asking for exactly
        as many rows as names: names are unique, so a full page is the whole answer and no further page is read.
        """
        rows: dict[str, dict[str, Any]] = {}
        field_list = list(dict.fromkeys([*fields, "name"])) if "*" not in fields else list(fields)
        for chunk in name_chunks(list(dict.fromkeys(names))):
            for row in await self._page(doctype, field_list, [["name", "in", chunk]], "name asc", 0, len(chunk)):
                if isinstance(row, dict) and row.get("name") in chunk:
                    rows[row["name"]] = row
        return rows

    async def table_fields(self, doctype: str) -> frozenset[str]:
        """The doctype's child-table fields on this site: Table fields of its DocType plus custom ones.

        Read from `GET /api/resource/DocType/{doctype}` (the DocType document, its `fields` rows carrying
        `fieldtype`) and the `Custom Field` list — not in the reference; this is how current Frappe exposes meta
        to a user allowed to read DocType. Raises ConnectorError when either cannot be read.
        """
        meta = self._document(await self._request("GET", resource_path("DocType", doctype)), f"GET DocType {doctype}")
        tables = {str(f.get("fieldname")) for f in meta.get("fields") or () if isinstance(f, dict)
                  and f.get("fieldtype") in TABLE_FIELDTYPES}
        custom = self.list_documents("Custom Field", fields=("fieldname",), order_by="name asc", filters=[
            ["dt", "=", doctype], ["fieldtype", "in", list(TABLE_FIELDTYPES)]])
        tables.update([str(row.get("fieldname")) async for row in custom])
        return frozenset(tables)

    async def update(
        self, doctype: str, name: str, changes: Mapping[str, Any], *, modified: str | None = None
    ) -> dict[str, Any]:
        payload = dict(changes)
        if modified is not None:
            payload["modified"] = modified  # the site compares it and raises TimestampMismatchError if stale (§5)
        # A PUT carrying `modified` is retried like any idempotent call; if an attempt succeeded unseen, the retry
        # reports TimestampMismatch, which the engine treats as "re-read and compare" — the same safe path.
        body = await self._request("PUT", resource_path(doctype, name), json=payload)
        return self._document(body, f"PUT {doctype} {name}")

    async def delete(self, doctype: str, name: str) -> bool:
        try:
            await self._request("DELETE", resource_path(doctype, name))
        except NotFound:
            return False  # also what a retried delete sees when the first attempt succeeded unseen
        return True

    async def rename_doc(self, doctype: str, old_name: str, new_name: str) -> str:
        """`frappe.client.rename_doc` (§5b): the site renames the document and rewrites every link to it; the new
        name. Not blindly retried: a repeat after an unseen success finds the old name gone."""
        body = {"doctype": doctype, "old_name": old_name, "new_name": new_name, "merge": False}
        answer = await self._request("POST", "/api/method/frappe.client.rename_doc", json=body, idempotent=False)
        message = answer.get("message") if isinstance(answer, dict) else None
        return str(message or new_name)

    async def count(self, doctype: str, filters: Filters | None = None) -> int:
        params = {"doctype": doctype, "filters": json.dumps(normalize_filters(filters))}
        return int(await self._call_method("GET", "frappe.client.get_count", params=params) or 0)

    async def list_documents(
        self,
        doctype: str,
        *,
        fields: Sequence[str] = ("name", "modified"),
        filters: Filters | None = None,
        modified_since: str | None = None,
        order_by: str = DEFAULT_ORDER,
        page_size: int = 500,
        limit: int | None = None,
        seen_at_watermark: Collection[str] = (),
    ) -> AsyncIterator[dict[str, Any]]:
        """Every matching row, page by page. See the module docstring for `modified_since` semantics."""
        if page_size < 1:
            raise ValueError("page_size must be >= 1 (Frappe reads 0 as 'no limit')")
        if limit is not None and limit <= 0:
            return
        base = normalize_filters(filters)
        if limit is not None:
            page_size = min(page_size, limit)
        if _normalized_order(order_by) == _normalized_order(DEFAULT_ORDER):
            # Keyset paging needs both columns; "*" already has them.
            field_list = list(fields) if "*" in fields else list(dict.fromkeys([*fields, "name", "modified"]))
            rows = self._iter_by_modified(doctype, field_list, base, modified_since, seen_at_watermark, page_size)
        else:
            if modified_since is not None:
                base.append(["modified", ">=", modified_since])
            rows = self._iter_by_offset(doctype, list(fields), base, order_by, page_size)
        yielded = 0
        async for row in rows:
            yield row
            yielded += 1
            if limit is not None and yielded >= limit:
                await rows.aclose()
                return

    def _document(self, body: Any, where: str) -> dict[str, Any]:
        document = _data(body)
        if not isinstance(document, dict):
            raise self._logged(ConnectorError(f"{where}: the answer holds no document", site=self.site))
        return document

    # ----------------------------------------------------------------------------------------- paging

    async def _page(
        self, doctype: str, fields: list[str], filters: list[list[Any]], order_by: str, start: int, size: int
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "fields": json.dumps(fields),
            "order_by": order_by,  # always explicit: the default order differs between versions (§3)
            "limit_start": start,
            "limit_page_length": size,
        }
        if filters:
            params["filters"] = json.dumps(filters)
        rows = _data(await self._request("GET", resource_path(doctype), params=params))
        if not isinstance(rows, list):
            raise self._logged(ConnectorError(f"list of {doctype} did not return a list", site=self.site))
        return rows

    async def _iter_by_offset(
        self, doctype: str, fields: list[str], filters: list[list[Any]], order_by: str, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Plain limit_start paging, for caller-chosen orders (may skip/repeat rows if the set changes)."""
        start = 0
        while True:
            rows = await self._page(doctype, fields, filters, order_by, start, page_size)
            for row in rows:
                yield row
            if len(rows) < page_size:
                return
            start += len(rows)

    async def _iter_by_modified(
        self,
        doctype: str,
        fields: list[str],
        base: list[list[Any]],
        since: str | None,
        seen_at_since: Collection[str],
        page_size: int,
    ) -> AsyncIterator[dict[str, Any]]:
        """Keyset paging on (modified, name): each page asks `modified >= boundary` from offset 0 and drops the
        names already yielded at the boundary. If a whole page is such names (more rows share one `modified` than
        fit a page) the rest of that group is walked by `name >`, then paging goes on with `modified >`."""
        boundary = since
        seen: set[str] = set(seen_at_since) if since is not None else set()
        past_group = False  # every row at `boundary` has been yielded
        while True:
            condition = [] if boundary is None else [["modified", ">" if past_group else ">=", boundary]]
            rows = await self._page(doctype, fields, base + condition, DEFAULT_ORDER, 0, page_size)
            fresh = [r for r in rows if not (r.get("modified") == boundary and r.get("name") in seen)]
            if not fresh and len(rows) == page_size:
                assert boundary is not None
                async for row in self._walk_group(doctype, fields, base, boundary, rows[-1]["name"], seen, page_size):
                    yield row
                past_group = True
                continue
            for row in fresh:
                if row["modified"] != boundary:
                    boundary, seen, past_group = row["modified"], set(), False
                seen.add(row["name"])
                yield row
            if len(rows) < page_size:
                return

    async def _walk_group(
        self,
        doctype: str,
        fields: list[str],
        base: list[list[Any]],
        modified: str,
        after: str,
        seen: set[str],
        page_size: int,
    ) -> AsyncIterator[dict[str, Any]]:
        """The rows sharing one `modified`, by name after `after` (the site's collation decides what "after" is)."""
        while True:
            condition = [["modified", "=", modified], ["name", ">", after]]
            rows = await self._page(doctype, fields, base + condition, "name asc", 0, page_size)
            for row in rows:
                if row["name"] not in seen:
                    seen.add(row["name"])
                    yield row
            if len(rows) < page_size:
                return
            after = rows[-1]["name"]

    # ----------------------------------------------------------------------------------------- requests

    async def _call_method(self, http_method: str, dotted: str, *, params: Mapping[str, Any] | None = None) -> Any:
        body = await self._request(http_method, f"/api/method/{dotted}", params=params)
        return body.get("message") if isinstance(body, dict) else None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._retry_wait,
            retry=retry_if_exception(lambda exc: self._should_retry(exc, idempotent)),
            before_sleep=self._before_retry,
            reraise=True,
        )
        return await retrying(self._attempt, method, path, params, json)

    def _should_retry(self, exc: BaseException, idempotent: bool) -> bool:
        if not isinstance(exc, ConnectorError) or not exc.retryable or isinstance(exc, CircuitOpen):
            return False
        if isinstance(exc, RateLimited) and (exc.retry_after or 0) > self._backoff_max:
            return False  # a long ban: hand it to the engine's queue rather than sleeping in here
        if idempotent:
            return True
        # An insert is only repeated when the site certainly did not run it: refused before processing (429/503)
        # or the connection never opened. After a timeout or a dropped response it may have been created.
        return isinstance(exc, RateLimited) or exc.status == 503 or isinstance(exc.__cause__, httpx.ConnectError)

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return 0.0  # the shared not-before gate already holds every request until Retry-After
        return float(self._backoff(state))

    def _before_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "%s %s: retrying (attempt %d of %d) after: %s",
            getattr(exc, "code", "ERP001"),
            self.site,
            state.attempt_number + 1,
            self._max_retries + 1,
            exc,
        )

    async def _attempt(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        self._check_not_before()
        if not self.circuit.allow_request():
            raise self._logged(
                CircuitOpen(
                    f"{method} {path} not sent: circuit open after {self.circuit.consecutive_failures} failures",
                    site=self.site,
                    retry_at=self.circuit.retry_at,
                )
            )
        try:
            response = await self._send(method, path, params, body)
            result = self._read(response, f"{method} {path}")
        except ConnectorError as exc:
            self._record_failure(exc)
            raise
        except BaseException:
            self.circuit.release()  # cancelled: no verdict on the site's health
            raise
        self.circuit.record_success()
        return result

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> httpx.Response:
        async with self._semaphore:
            await self._wait_not_before()  # a 429 may have arrived while we queued for a slot
            async with self._limiter:
                self.stats.requests += 1
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                started = time.perf_counter()
                client = await self._take_client()
                answered = False
                try:
                    response = await client.request(method, path, params=params, json=body)
                    answered = True
                    return response
                except httpx.TransportError as exc:
                    raise self._transport_error(exc, f"{method} {path}") from exc
                finally:
                    self._give_back(client, reusable=answered)
                    self.stats.in_flight -= 1
                    self.stats.last_latency_ms = (time.perf_counter() - started) * 1000

    def _give_back(self, client: httpx.AsyncClient, *, reusable: bool) -> None:
        """Return a client to the free queue, or retire it when its request ended without an answer.

        A request cancelled while httpcore 1.0.9 opens its connection leaves that connection in the client's pool
        for good (encode/httpcore#1093), and with one connection per client every later request on it would end
        in PoolTimeout. A client whose request was cancelled or failed in transport is closed in the background
        instead, and the next request makes a new one.
        """
        if reusable:
            self._free.put_nowait(client)
            return
        self._clients.remove(client)
        if self._transport is not None:
            return  # a transport handed in is shared by every client: closing this one would close it for all
        closing = asyncio.get_running_loop().create_task(_close_quietly(client))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _read(self, response: httpx.Response, where: str) -> Any:
        self.stats.last_status = response.status_code
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ConnectorError(
                    f"{where} → HTTP {response.status_code} with a body that is not JSON (a proxy page?)",
                    site=self.site,
                    status=response.status_code,
                ) from None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        # Scrub before decoding (and clipping): a proxy may echo the request headers into its error page.
        body = decode_error_body(self._redact(response.text))
        error = classify_error(self.site, response.status_code, body, where=where, retry_after=retry_after)
        if isinstance(error, RateLimited) and retry_after is not None:
            self._not_before = max(self._not_before, time.monotonic() + retry_after)
        raise error

    def _transport_error(self, exc: httpx.TransportError, where: str) -> ConnectorError:
        detail = self._redact(str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.ConnectTimeout):
            return ConnectionFailed(f"{where}: connect timed out: {detail}", site=self.site)
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(
                f"{where}: no answer within {self.config.timeout_seconds:g}s ({type(exc).__name__})", site=self.site
            )
        return ConnectionFailed(f"{where}: {type(exc).__name__}: {detail}", site=self.site)

    def _record_failure(self, exc: ConnectorError) -> None:
        self.stats.failures += 1
        self.stats.last_error_code = str(exc.code)
        if isinstance(exc, AuthenticationFailed):
            # 401 answers every request alike: the site refuses us as a whole, so the breaker stops asking
            # (and queued items keep their attempts) until a trial request gets through again.
            self.circuit.record_failure("auth")
        elif is_outage(exc):
            self.circuit.record_failure()
        else:
            self.circuit.record_success()  # it answered: the site is up, whatever it thought of the request
        self._logged(exc)

    # ----------------------------------------------------------------------------------------- 429 gate

    def _check_not_before(self) -> None:
        remaining = self._not_before - time.monotonic()
        if remaining > self._backoff_max:
            raise self._logged(
                RateLimited(
                    f"rate limited; holding requests for {remaining:.1f}s", site=self.site, retry_after=remaining
                )
            )

    async def _wait_not_before(self) -> None:
        # A deadline, not an event: sleep until it, then look again in case a newer 429 pushed it further.
        remaining = self._not_before - time.monotonic()
        while remaining > 0:
            await asyncio.sleep(remaining)
            remaining = self._not_before - time.monotonic()

    # ----------------------------------------------------------------------------------------- secrets

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _logged(self, error: ConnectorError) -> ConnectorError:
        level = logging.WARNING if error.retryable or isinstance(error, AuthenticationFailed) else logging.INFO
        log.log(level, "%s", error)
        return error


async def _close_quietly(client: httpx.AsyncClient) -> None:
    try:
        await client.aclose()
    except Exception as exc:  # a retired client: nothing waits for it, and its socket is gone either way
        log.debug("closing a retired HTTP client: %s", exc)


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


def _limiter(requests_per_second: float) -> AsyncLimiter:
    # AsyncLimiter(max_rate, period) cannot take a fractional max_rate below 1 (one acquire needs 1 unit).
    if requests_per_second >= 1:
        return AsyncLimiter(requests_per_second, 1)
    return AsyncLimiter(1, 1 / requests_per_second)


def _tls_verify(config: SiteConfig) -> ssl.SSLContext | bool:
    if not config.verify_tls:
        return False
    return _ssl_context(str(config.ca_bundle) if config.ca_bundle is not None else None)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One context per trust setting, shared by every client: loading a CA bundle costs ~50 ms each time."""
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())


async def connect(
    site: str,
    config: SiteConfig,
    credentials: _Credentials,
    *,
    probe: bool = True,
    **options: Any,
) -> FrappeConnector:
    """Build a connector from anything with `api_key`/`api_secret` (e.g. secrets.SiteCredentials) and, unless
    `probe=False`, prove the credentials with `whoami()` (closing the client again if that fails)."""
    connector = FrappeConnector(site, config, credentials.api_key, credentials.api_secret, **options)
    if probe:
        try:
            await connector.whoami()
        except BaseException:
            await connector.aclose()
            raise
    return connector
