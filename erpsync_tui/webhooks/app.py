"""The webhook receiver: a Starlette app that verifies Frappe webhooks and stores them in the durable queue.

A 200 means "stored": the answer is sent only after the transaction holding the event has committed, so a
crash after the 200 cannot lose it, and a crash before it makes Frappe retry. Anything refused stores
nothing, is answered with a JSON reason, logged as one ERP006 line and counted by reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import update
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from erpsync_tui.config import AppConfig
from erpsync_tui.errors import ErrorCode, quick_fix
from erpsync_tui.metrics import Metrics
from erpsync_tui.secrets import redact
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import Meta, utcnow
from erpsync_tui.store.queries import queue_depth
from erpsync_tui.store.queue import Stored
from erpsync_tui.webhooks.parsing import (
    SIGNATURE_HEADER,
    Rejected,
    WebhookEvent,
    decode_body,
    extract_event,
    signature_matches,
)
from erpsync_tui.webhooks.writer import GroupCommitWriter, WebhookWrite, WriterClosed

log = logging.getLogger("erpsync.webhooks")

# After a 413 we still read (and discard) this much of the refused body: closing a socket with unread data
# makes the kernel send RST, and the client then loses our 413 and just sees "connection reset".
DRAIN_MAX_BYTES = 256 * 1024
DRAIN_TIMEOUT_S = 2.0
HEALTH_TIMEOUT_S = 5.0  # shorter than SQLite's 10 s busy timeout: a stuck writer lock is reported, not waited out

StatusProvider = Callable[[], dict[str, Any]]


class _JSON(JSONResponse):
    """JSON that tolerates datetimes and other objects a status provider may hand back."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, separators=(",", ":")).encode("utf-8")


class WebhookReceiver:
    """The request handlers and their shared state; `create_app` wires them into routes."""

    def __init__(
        self,
        config: AppConfig,
        db: Database,
        *,
        webhook_secret: str | None,
        status_provider: StatusProvider | None,
        metrics: Metrics,
        on_stored: Callable[[], None] | None,
    ) -> None:
        self.config = config
        self.db = db
        self.secret = webhook_secret or None
        self.status_provider = status_provider
        self.metrics = metrics
        self.max_body = config.webhooks.max_body_bytes
        self.doctypes = frozenset(config.sync.doctypes)
        self.writer = GroupCommitWriter(db, max_attempts=config.sync.retry.max_attempts, on_commit=on_stored)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        yield
        await self.writer.aclose()

    # ------------------------------------------------------------------------------ POST /webhook/{site}

    async def webhook(self, request: Request) -> Response:
        site = request.path_params["site"]
        try:
            event = await self._verified_event(request, site)
            stored = await self._store(site, event)
        except Rejected as rejection:
            if rejection.status == 413:
                await _discard_rest(request)
            return self._reject(request, site, rejection)
        self.metrics.accepted()
        return _JSON({"status": "queued", "id": stored.id, "coalesced": stored.coalesced})

    async def serve_webhook(self, scope: Scope, receive: Receive, send: Send, site: str) -> None:
        """`webhook` as a bare ASGI call: the hot path skips Starlette's middleware and routing layers."""
        scope["path_params"] = {"site": site}
        try:
            response = await self.webhook(Request(scope, receive, send))
        except Exception:  # what Starlette's ServerErrorMiddleware would do, minus the HTML
            log.exception("webhook handler failed code=%s site=%r", ErrorCode.WEBHOOK, site)
            response = _JSON({"status": "error", "code": str(ErrorCode.WEBHOOK), "error": "internal error"},
                             status_code=500)
        await response(scope, receive, send)

    async def _verified_event(self, request: Request, site: str) -> WebhookEvent:
        """Every check a request must pass, cheapest first; nothing is stored until all have passed."""
        if site not in self.config.sites:
            raise Rejected(404, "unknown_site", f"unknown site {site!r}")
        if self.secret is None:
            raise Rejected(
                503,
                "no_secret",
                "no webhook secret is configured, so webhooks cannot be verified and are refused; "
                "run `erpsync-tui secrets set webhook` or export ERPSYNC_WEBHOOK_SECRET",
            )
        self._check_declared_length(request)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            raise Rejected(401, "missing_signature", f"missing {SIGNATURE_HEADER} header")
        body = await self._read_body(request)
        if not signature_matches(body, signature, self.secret):
            raise Rejected(401, "bad_signature", f"{SIGNATURE_HEADER} does not match the body")
        data = decode_body(body)
        # Query parameters are only a fallback (unsigned); parsing them costs time on every request otherwise.
        event = extract_event(data, request.query_params if not {"doctype", "event"} <= data.keys() else {})
        if event.doctype not in self.doctypes:
            raise Rejected(422, "unknown_doctype", f"doctype {event.doctype!r} is not synced (see sync.doctypes)")
        return event

    def _check_declared_length(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is None:
            return  # chunked: counted while streaming
        if not declared.isdigit():
            raise Rejected(400, "bad_body", "invalid Content-Length")
        if int(declared) > self.max_body:
            raise Rejected(413, "too_large", f"body of {declared} bytes exceeds the limit of {self.max_body}")

    async def _read_body(self, request: Request) -> bytes:
        """The raw body, never more than max_body bytes in memory whatever the headers claim."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body:
                    raise Rejected(413, "too_large", f"body exceeds the limit of {self.max_body} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Rejected(400, "disconnected", "the client disconnected before sending the whole body") from None
        return b"".join(chunks)

    async def _store(self, site: str, event: WebhookEvent) -> Stored:
        try:
            return await self.writer.submit(WebhookWrite(site=site, event=event, received_at=utcnow()))
        except WriterClosed as exc:
            raise Rejected(503, "shutting_down", str(exc)) from None
        except Exception as exc:
            # Frappe retries a non-2xx delivery, so refusing is the honest answer when the row is not durable.
            raise Rejected(503, "store_failed", f"could not store the event: {_reason(exc)}") from None

    def _reject(self, request: Request, site: str, rejection: Rejected) -> Response:
        self.metrics.rejected(rejection.reason)
        client = request.client.host if request.client else "?"
        # One line; never the signature header or the body. Values from the request are repr()'d (no newlines).
        log.warning(
            "webhook rejected code=%s status=%d reason=%s site=%r client=%s: %s",
            ErrorCode.WEBHOOK,
            rejection.status,
            rejection.reason,
            site,
            client,
            redact(rejection.message),
        )
        content = {
            "status": "rejected",
            "code": str(ErrorCode.WEBHOOK),
            "reason": rejection.reason,
            "error": rejection.message,
            "quick_fix": quick_fix(ErrorCode.WEBHOOK),
        }
        # After a 413 the unread rest of the body makes the connection unusable: say so.
        headers = {"Connection": "close"} if rejection.status == 413 else None
        return _JSON(content, status_code=rejection.status, headers=headers)

    # ------------------------------------------------------------------------------ GET /health

    async def health(self, _request: Request) -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._probe_write), HEALTH_TIMEOUT_S)
        except TimeoutError:
            return self._unhealthy(f"no write lock within {HEALTH_TIMEOUT_S:g} s (another writer holds it)")
        except Exception as exc:
            return self._unhealthy(_reason(exc))
        if not self.writer.alive:
            return self._unhealthy("the receiver's writer has stopped (shutting down)")
        sites = await asyncio.to_thread(self._site_states)
        # The database decides the status code (a load balancer's question: can this receiver store events?);
        # each site's state rides along, so a monitor sees a site outage or a refused key here too.
        status = "ok" if all(s in ("closed", "unknown") for s in sites.values()) else "degraded"
        return _JSON({"status": status, "database": "writable", "sites": sites})

    def _site_states(self) -> dict[str, str]:
        """Each site's circuit as the engine reports it: closed, half_open, open, auth_refused (or unknown)."""
        from erpsync_tui.store.control import engine_status

        try:
            circuits = engine_status(self.db).circuits
        except Exception:  # the write probe passed; a failed read here must not fail the health answer
            circuits = {}
        return {name: str(circuits.get(name, "unknown")) for name in self.config.pair}

    def _probe_write(self) -> None:
        """A real write, rolled back: proves the lock can be taken and the file is writable (not read-only)."""
        with Session(self.db.writer_engine) as session:
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value=Meta.value))
            session.rollback()

    @staticmethod
    def _unhealthy(reason: str) -> Response:
        log.warning("webhook receiver unhealthy code=%s: %s", ErrorCode.QUEUE, reason)
        return _JSON({"status": "error", "database": "unavailable", "reason": reason}, status_code=503)

    # ------------------------------------------------------------------------------ GET /status

    async def status(self, _request: Request) -> Response:
        depth = await asyncio.to_thread(self._queue_depth)
        age = depth.oldest_pending_age
        content: dict[str, Any] = {
            "queue_depth": depth.by_status,
            "backlog": depth.backlog,
            "oldest_pending_age_seconds": round(age.total_seconds(), 3) if age is not None else None,
            "receiver": {"secret_configured": self.secret is not None, "commit_batches": self.writer.batches},
        }
        content.update(self._provided_status())
        return _JSON(content)

    def _queue_depth(self) -> Any:
        with self.db.read() as session:
            return queue_depth(session)

    def _provided_status(self) -> dict[str, Any]:
        if self.status_provider is None:
            return {}
        try:
            return dict(self.status_provider())
        except Exception as exc:  # the engine's status must never break the receiver's
            return {"status_provider_error": _reason(exc)}

    # ------------------------------------------------------------------------------ GET /metrics

    async def metrics_endpoint(self, _request: Request) -> Response:
        try:
            depth = await asyncio.to_thread(self._queue_depth)
            self.metrics.set_queue_depth(depth.by_status)
        except Exception as exc:  # still serve the counters; the stale gauge is better than no scrape
            log.warning("queue depth for /metrics failed code=%s: %s", ErrorCode.QUEUE, _reason(exc))
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


async def _discard_rest(request: Request) -> None:
    """Read what is left of a refused body, in constant memory, up to DRAIN_MAX_BYTES and DRAIN_TIMEOUT_S."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_MAX_BYTES:
        return  # not worth reading: that client gets a reset instead of the 413
    drained = 0
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for chunk in request.stream():
                drained += len(chunk)
                if drained > DRAIN_MAX_BYTES:
                    return
    except (TimeoutError, ClientDisconnect, RuntimeError):
        return  # RuntimeError: Starlette's "stream consumed" when nothing is left


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return redact(f"{type(exc).__name__}: {orig or exc}")[:500]


class _ReceiverApp(Starlette):
    """The Starlette app, with POST /webhook/{site} dispatched before its middleware stack.

    Each layer of that stack (error middleware, exception middleware, router, route) is an extra coroutine
    and a path match per request, a large share of a webhook's cost when thousands arrive per second; the
    other endpoints keep the full stack.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            site = _webhook_site(scope["path"])
            if site is not None:
                scope["app"] = self
                await self.state.receiver.serve_webhook(scope, receive, send, site)
                return
        await super().__call__(scope, receive, send)


def _webhook_site(path: str) -> str | None:
    """The {site} of /webhook/{site} (one non-empty segment, as the Route would match), else None."""
    if not path.startswith("/webhook/"):
        return None
    site = path[len("/webhook/") :]
    return site if site and "/" not in site else None


def create_app(
    config: AppConfig,
    db: Database,
    *,
    webhook_secret: str | None,
    status_provider: StatusProvider | None = None,
    metrics: Metrics | None = None,
    on_stored: Callable[[], None] | None = None,
) -> Starlette:
    """The receiver app. `on_stored` runs on the event loop after each commit (the engine wakes its queue)."""
    receiver = WebhookReceiver(
        config,
        db,
        webhook_secret=webhook_secret,
        status_provider=status_provider,
        metrics=metrics if metrics is not None else Metrics(),
        on_stored=on_stored,
    )
    app = _ReceiverApp(
        routes=[
            Route("/webhook/{site}", receiver.webhook, methods=["POST"]),
            Route("/health", receiver.health, methods=["GET"]),
            Route("/status", receiver.status, methods=["GET"]),
            Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.receiver = receiver
    return app
