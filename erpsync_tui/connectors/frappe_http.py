"""One Frappe site over HTTP: the request path every connector call takes (see frappe.py's docstring).

    not-before gate (a 429's Retry-After, shared) → circuit breaker → semaphore (max_concurrency)
    → rate limiter (requests_per_second) → HTTP → error mapping → tenacity retries for transient failures
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

import certifi
import httpx
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    RateLimited,
    RequestTimeout,
)
from erpsync_tui.connectors.circuit import CircuitBreaker
from erpsync_tui.connectors.frappe_wire import (
    _REDACTED,
    classify_error,
    decode_error_body,
    is_outage,
    parse_retry_after,
)

log = logging.getLogger("erpsync.connector")


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


class FrappeHTTP:
    """The transport of `FrappeConnector`: clients, credentials, retries, breaker, rate limit, error mapping."""

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

    async def __aenter__(self) -> Self:
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
