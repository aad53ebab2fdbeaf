"""The Frappe / ERPNext REST (v1) connector.

Facts about Frappe's API relied on here are in shared/reference/frappe-rest-api.md; section numbers (§) below
point into it. Three modules: this one (the documents API), frappe_http.py (the request path below, as the
base class `FrappeHTTP`) and frappe_wire.py (URLs, filters, error bodies, timestamps: no I/O).
One `FrappeConnector` per site owns one keep-alive `httpx.AsyncClient` and, in front of it:

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

import json
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Any

from erpsync_tui.config import AppConfig, SiteConfig
from erpsync_tui.connectors.base import (
    DEFAULT_ORDER,
    AuthenticationFailed,
    ConnectorError,
    Filters,
    NotFound,
)
from erpsync_tui.connectors.frappe_http import (
    FrappeHTTP,
    _Credentials,
)
from erpsync_tui.connectors.frappe_wire import (
    INSERT_MANY_MAX,
    TABLE_FIELDTYPES,
    _data,
    _normalized_order,
    name_chunks,
    normalize_filters,
    resource_path,
)

log = logging.getLogger("erpsync.connector")


class FrappeConnector(FrappeHTTP):
    """A Frappe/ERPNext site over REST v1 with token auth. Use one per site, `aclose()` it (or `async with`)."""

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


def site_connectors(
    config: AppConfig, credentials: Mapping[str, tuple[str, str]], *, sites: Iterable[str] | None = None,
    **options: Any,
) -> dict[str, FrappeConnector]:
    """One connector per synced site (or per name in `sites`) that has credentials ((api_key, api_secret) by
    site): the one place a configuration becomes connectors (serve, the console, the demo, the CLI, doctor's
    probes; `options` as FrappeConnector's)."""
    names = config.pair if sites is None else [name for name in sites if name in config.sites]
    return {name: FrappeConnector(name, config.sites[name], *credentials[name], **options)
            for name in names if name in credentials}


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
