"""The Starlette app of one simulated site: Frappe v1 REST endpoints, faults, counters, admin endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import errors
from .auth import GUEST, Identity, check_permission

if TYPE_CHECKING:
    from .site import SimSite

log = logging.getLogger(__name__)

HANG_MAX_S = 600.0  # a hung request answers at the latest after this long
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
Handler = Callable[[Request, Identity], Awaitable[Response]]


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # Frappe: json.dumps(response, default=json_handler, separators=(",", ":")) — ASCII escapes kept.
        return json.dumps(content, default=str, separators=(",", ":")).encode()


class _NoResponse(Response):
    """Returned after the transport was aborted: sends nothing at all."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


class _Dropped(Exception):
    pass


def error_response(exc: errors.FrappeError, *, tracebacks: bool = False) -> Response:
    return JSON(exc.body(tracebacks=tracebacks), status_code=exc.http_status)


def _loads(value: Any, default: Any = None) -> Any:
    """Frappe's parse_json: JSON text is decoded, anything else passes through as is."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _int_param(value: Any, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.DataError(f"Invalid integer value: {value!r}") from None


async def read_body(request: Request) -> dict[str, Any]:
    """A JSON body, or a form body whose fields (notably `data=<json>`) are merged in."""
    raw = await request.body()
    if not raw:
        return {}
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type:
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        data = _loads(form.pop("data", None), {})
        if isinstance(data, dict):
            form.update(data)
        return form
    try:
        body = json.loads(raw)
    except ValueError:
        raise errors.ValidationError("Request body is not valid JSON") from None
    if isinstance(body, dict) and isinstance(body.get("data"), str) and len(body) == 1:
        inner = _loads(body["data"])
        if isinstance(inner, dict):
            return inner
    if not isinstance(body, dict):
        raise errors.ValidationError("Request body must be a JSON object")
    return body


class SiteApi:
    """Request handling for one site. Every endpoint runs through `endpoint()` for faults, auth and counting."""

    def __init__(self, site: SimSite) -> None:
        self.site = site
        self.methods: dict[str, tuple[Handler, bool]] = {
            "frappe.auth.get_logged_user": (self.m_logged_user, False),
            "ping": (self.m_ping, True),
            "frappe.client.get_count": (self.m_get_count, False),
            "frappe.client.get_list": (self.m_get_list, False),
            "frappe.client.get": (self.m_get, False),
            "frappe.client.get_value": (self.m_get_value, False),
            "frappe.client.insert_many": (self.m_insert_many, False),
            "frappe.client.submit": (self.m_submit, False),
            "frappe.client.cancel": (self.m_cancel, False),
            "frappe.client.rename_doc": (self.m_rename_doc, False),
        }

    # ------------------------------------------------------------------ pipeline

    def endpoint(self, template: str, handler: Handler, *, guest_ok: bool = False) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            site = self.site
            label = template.replace(":path", "")
            if template.endswith("{method}"):
                method_name = request.path_params["method"]
                label = template.replace("{method}", method_name) if method_name in self.methods else template
            try:
                response = await self._apply_faults(request)
                if response is None:
                    identity = self._identify(request)
                    response = self._rate_limit(identity) or self._random_error()
                    if response is None:
                        if identity.user == GUEST and not guest_ok:
                            doctype = request.path_params.get("doctype", "")
                            message = f"Insufficient Permission for {doctype}"
                            raise errors.PermissionError(message, error_message=message)
                        response = await handler(request, identity)
                        lose = site.faults.drop_response
                        if lose and lose in request.url.path:
                            self._abort(request)  # it ran and committed; only the answer is lost
                            await asyncio.sleep(0)
                            await asyncio.sleep(0)
                            raise _Dropped
            except errors.FrappeError as exc:
                response = error_response(exc, tracebacks=site.tracebacks)
            except _Dropped:
                site.record_request(request.method, label, "dropped")
                return _NoResponse()
            except ClientDisconnect:  # the client went away mid-request (e.g. a killed engine): nobody to answer
                site.record_request(request.method, label, "client_gone")
                return _NoResponse()
            except Exception as exc:  # a bug in the simulator must still look like a Frappe 500
                log.exception("simulator handler failed")
                response = error_response(errors.OperationalError(f"{type(exc).__name__}: {exc}"))
            site.record_request(request.method, label, response.status_code)
            return response

        return run

    async def _apply_faults(self, request: Request) -> Response | None:
        site = self.site
        faults = site.faults
        if faults.drop:
            self._abort(request)
            await asyncio.sleep(0)  # let the transport report connection_lost before we return
            await asyncio.sleep(0)
            raise _Dropped
        if faults.hang:
            deadline = time.monotonic() + HANG_MAX_S
            # Polling, not an Event: faults are flipped from other threads without touching this loop.
            while site.faults.hang and not site.closing and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            faults = site.faults
        delay = faults.latency_ms
        if faults.jitter_ms:
            delay += site.rng.uniform(0.0, faults.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        if faults.rate_limit_always:
            return self._too_many(faults.retry_after, limit=0)
        return None

    def _abort(self, request: Request) -> None:
        transport = self.site.transports.get(request.scope.get("client"))
        if transport is None:
            raise errors.OperationalError("drop fault needs the simulator's own uvicorn protocol")
        transport.abort()

    def _identify(self, request: Request) -> Identity:
        client = request.scope.get("client") or ("127.0.0.1", 0)
        identity = self.site.keyring.identify(request.headers.get("authorization"), client[0])
        if identity.key is not None and self.site.faults.revoked:
            raise errors.AuthenticationError("Invalid API key or secret (key revoked)")
        return identity

    def _rate_limit(self, identity: Identity) -> Response | None:
        rps = self.site.faults.per_key_rps
        if not rps:
            return None
        allowed, wait_s, _remaining = self.site.rate_limiter.take(identity.rate_key, rps)
        if allowed:
            return None
        return self._too_many(max(1, int(wait_s + 0.999)), limit=int(rps))

    @staticmethod
    def _too_many(retry_after: int, *, limit: int) -> Response:
        # Frappe's rate limiter answers plain text, not a JSON error body.
        headers = {
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(retry_after),
        }
        return Response("Too Many Requests", status_code=429, media_type="text/plain", headers=headers)

    def _random_error(self) -> Response | None:
        rate = self.site.faults.error_rate
        if rate and self.site.rng.random() < rate:
            exc = errors.OperationalError("(2013, 'Lost connection to MySQL server during query')")
            return error_response(exc, tracebacks=self.site.tracebacks)
        return None

    # ------------------------------------------------------------------ /api/resource

    async def collection(self, request: Request, identity: Identity) -> Response:
        doctype = request.path_params["doctype"]
        if request.method == "POST":
            check_permission(identity, doctype, write=True)
            body = await read_body(request)
            return JSON({"data": self.site.api_insert(doctype, body, identity.user)})
        check_permission(identity, doctype, write=False)
        return JSON({"data": self._list(doctype, dict(request.query_params))})

    def _list(self, doctype: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        # A missing limit means Frappe's default page of 20; 0 means everything.
        page = params.get("limit_page_length", params.get("limit"))
        return self.site.store.list(
            doctype,
            fields=_loads(params.get("fields")),
            filters=_loads(params.get("filters")),
            or_filters=_loads(params.get("or_filters")),
            order_by=params.get("order_by") or None,
            limit_start=_int_param(params.get("limit_start"), 0),
            limit_page_length=_int_param(page, 20),
        )

    async def document(self, request: Request, identity: Identity) -> Response:
        doctype = request.path_params["doctype"]
        name = request.path_params["name"]
        method = request.method
        check_permission(identity, doctype, write=method != "GET")
        site = self.site
        if method == "GET":
            if doctype == "DocType":  # the doctype's meta, as Frappe serves the DocType document
                return JSON({"data": site.store.doctype_document(name)})
            return JSON({"data": site.store.read(doctype, name)})
        if method == "PUT":
            body = await read_body(request)
            return JSON({"data": site.api_update(doctype, name, body, identity.user)})
        site.api_delete(doctype, name, identity.user)
        return JSON({"data": "ok"}, status_code=202)

    # ------------------------------------------------------------------ /api/method

    async def method(self, request: Request, identity: Identity) -> Response:
        name = request.path_params["method"]
        entry = self.methods.get(name)
        if entry is None:
            # Frappe fails to resolve the dotted path; answered as 404 like any unknown route.
            raise errors.DoesNotExistError(f"Method {name} not found")
        handler, guest_ok = entry
        if identity.user == GUEST and not guest_ok:
            raise errors.PermissionError("Not permitted", error_message="Not permitted")
        return await handler(request, identity)

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        if request.method != "GET":
            params.update(await read_body(request))
        return params

    async def m_logged_user(self, request: Request, identity: Identity) -> Response:
        return JSON({"message": identity.user})

    async def m_ping(self, request: Request, identity: Identity) -> Response:
        offset = self.site.faults.clock_offset_s
        if not offset:
            return JSON({"message": "pong"})
        from email.utils import formatdate

        # Sent after the server's own Date header: a client reading the last one sees the skewed clock.
        return JSON({"message": "pong"}, headers={"Date": formatdate(time.time() + offset, usegmt=True)})

    async def m_get_count(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        doctype = str(params.get("doctype") or "")
        check_permission(identity, doctype, write=False)
        return JSON({"message": self.site.store.count(doctype, _loads(params.get("filters")))})

    async def m_get_list(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        doctype = str(params.get("doctype") or "")
        check_permission(identity, doctype, write=False)
        return JSON({"message": self._list(doctype, params)})

    async def m_get(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        doctype = str(params.get("doctype") or "")
        check_permission(identity, doctype, write=False)
        return JSON({"message": self.site.store.read(doctype, str(params.get("name") or ""))})

    async def m_get_value(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        doctype = str(params.get("doctype") or "")
        check_permission(identity, doctype, write=False)
        fieldname = _loads(params.get("fieldname"), "name")
        fields = fieldname if isinstance(fieldname, list) else [fieldname]
        filters = _loads(params.get("filters"))
        if isinstance(filters, str):  # a bare name
            filters = {"name": filters}
        rows = self.site.store.list(doctype, fields=fields, filters=filters, limit_page_length=1)
        return JSON({"message": rows[0] if rows else None})

    async def m_insert_many(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        docs = _loads(params.get("docs"), [])
        if not isinstance(docs, list):
            raise errors.ValidationError("docs must be a list")
        if len(docs) > 200:
            raise errors.ValidationError("Only 200 inserts allowed in one request")
        if not all(isinstance(doc, dict) for doc in docs):
            raise errors.ValidationError("docs must be a list of documents")
        for doc in docs:
            check_permission(identity, str(doc.get("doctype") or ""), write=True)
        # One request, one transaction in Frappe: an error in any document rolls back the whole call.
        return JSON({"message": self.site.api_insert_many(docs, identity.user)})

    async def m_submit(self, request: Request, identity: Identity) -> Response:
        """frappe.client.submit(doc): the document as sent (its `modified` checked), saved with docstatus 1."""
        params = await self._params(request)
        doc = _loads(params.get("doc"), {})
        if not isinstance(doc, dict) or not doc.get("doctype") or not doc.get("name"):
            raise errors.ValidationError("doc must be a document with doctype and name")
        doctype, name = str(doc["doctype"]), str(doc["name"])
        check_permission(identity, doctype, write=True)
        changes = {k: v for k, v in doc.items() if k not in ("doctype", "name")}
        changes["docstatus"] = 1
        return JSON({"message": self.site.api_update(doctype, name, changes, identity.user)})

    async def m_cancel(self, request: Request, identity: Identity) -> Response:
        """frappe.client.cancel(doctype, name): docstatus 1 → 2; answers no message."""
        params = await self._params(request)
        doctype, name = str(params.get("doctype") or ""), str(params.get("name") or "")
        check_permission(identity, doctype, write=True)
        self.site.api_update(doctype, name, {"docstatus": 2}, identity.user)
        return JSON({})

    async def m_rename_doc(self, request: Request, identity: Identity) -> Response:
        params = await self._params(request)
        doctype = str(params.get("doctype") or "")
        check_permission(identity, doctype, write=True)
        merge = str(params.get("merge") or "").lower() in ("1", "true")
        new = self.site.api_rename(doctype, str(params.get("old_name") or ""), str(params.get("new_name") or ""),
                                   identity.user, merge=merge)
        return JSON({"message": new})

    # ------------------------------------------------------------------ fallbacks and admin

    async def not_found(self, request: Request, identity: Identity) -> Response:
        raise errors.DoesNotExistError(f"Not found: {request.url.path}")

    def _admin(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            client = request.scope.get("client")
            if client and client[0] not in LOOPBACK:
                return JSON({"error": "admin endpoints are loopback-only"}, status_code=403)
            try:
                return await handler(request)
            except (ValueError, TypeError) as exc:
                return JSON({"error": str(exc)}, status_code=400)

        return run

    async def admin_faults(self, request: Request) -> Response:
        site = self.site
        if request.method == "POST":
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object of fault fields")
            site.set_faults(**body)
        elif request.method == "DELETE":
            site.clear_faults()
        return JSON({"faults": site.faults.as_dict()})

    async def admin_stats(self, request: Request) -> Response:
        return JSON(self.site.stats())

    async def admin_webhooks(self, request: Request) -> Response:
        site = self.site
        if request.method == "POST":
            body = json.loads(await request.body() or b"{}")
            site.add_webhook(str(body["url"]), str(body.get("secret", "")), body.get("doctypes"))
        elif request.method == "DELETE":
            site.clear_webhooks()
        targets = [{"url": t.url, "doctypes": sorted(t.doctypes) if t.doctypes else None}
                   for t in site.webhooks.targets]
        return JSON({"targets": targets, "log": list(site.webhooks.log)[-50:]})


def build_app(site: SimSite) -> Starlette:
    api = SiteApi(site)
    routes: list[Route] = []
    for prefix in ("/api", "/api/v1"):
        for template, handler, methods, guest_ok in (
            (f"{prefix}/method/{{method}}", api.method, ["GET", "POST"], True),
            (f"{prefix}/resource/{{doctype}}", api.collection, ["GET", "POST"], False),
            (f"{prefix}/resource/{{doctype}}/{{name:path}}", api.document, ["GET", "PUT", "DELETE"], False),
        ):
            routes.append(Route(template, api.endpoint(template, handler, guest_ok=guest_ok), methods=methods))
    routes += [
        Route("/_sim/faults", api._admin(api.admin_faults), methods=["GET", "POST", "DELETE"]),
        Route("/_sim/stats", api._admin(api.admin_stats), methods=["GET"]),
        Route("/_sim/webhooks", api._admin(api.admin_webhooks), methods=["GET", "POST", "DELETE"]),
        Route("/api/{rest:path}", api.endpoint("/api/{unknown}", api.not_found, guest_ok=True), methods=ALL_METHODS),
    ]
    return Starlette(routes=routes)
