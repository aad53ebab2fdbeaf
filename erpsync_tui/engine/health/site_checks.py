"""Checks of a site over the network: reachable, authenticated, doctypes, circuit, clock, receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx

from erpsync_tui.config import AppConfig, SiteConfig
from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    Connector,
    ConnectorError,
    PermissionDenied,
    RateLimited,
)
from erpsync_tui.engine.health.result import RECEIVER_TIMEOUT_SECONDS, CheckResult, _result
from erpsync_tui.engine.health.tls import _cert_problem, _client_context, _probe_timeout
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import utcnow

# ============================================================================================ site checks


async def check_reachable(name: str, site: SiteConfig) -> CheckResult:
    """GET /api/method/ping without credentials (it is guest-allowed), so this tests the network path only."""
    check, timeout = "site.reachable", _probe_timeout(site)
    try:
        context = await asyncio.to_thread(_client_context, site.verify_tls, site.ca_bundle)
        async with httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False) as client:
            started = time.perf_counter()  # the round trip only, not building the client
            response = await client.get(f"{site.base_url}/api/method/ping")
    except httpx.ConnectTimeout:
        return _result(check, name, "fail", "no connection", f"connecting to {site.base_url} took over {timeout:g} s",
                       ErrorCode.CONNECTION, unreachable_fix(name, site))
    except httpx.TimeoutException as exc:
        return _result(check, name, "fail", "no answer", f"{site.base_url} accepted the connection but did not answer "
                       f"within {timeout:g} s ({type(exc).__name__})", ErrorCode.TIMEOUT)
    except (httpx.HTTPError, OSError) as exc:
        return _unreachable(name, site, exc)
    latency = f"{(time.perf_counter() - started) * 1000:.0f} ms"
    if response.status_code == 429:
        return _result(check, name, "fail", "rate limited", f"{site.base_url} answers but refuses us: HTTP 429 "
                       f"(Retry-After {response.headers.get('Retry-After', '?')})", ErrorCode.RATE_LIMIT,
                       f"Lower sites.{name}.requests_per_second, or raise the site's rate_limit in its "
                       "site_config.json; the queue waits for it meanwhile.")
    if response.status_code >= 500:
        return _result(check, name, "fail", f"HTTP {response.status_code}",
                       f"{site.base_url} answered HTTP {response.status_code} in {latency}: reachable, but the "
                       "site or its proxy fails", ErrorCode.CONNECTION,
                       f"{site.base_url} is reachable (DNS and network are fine) but answers "
                       f"{response.status_code}: read the site's Error Log and its web server's log.")
    if not response.is_success:
        return _result(check, name, "warn", latency, f"{site.base_url} answers, but /api/method/ping gave HTTP "
                       f"{response.status_code}; is this a Frappe site?", ErrorCode.CONNECTION)
    return _result(check, name, "ok", latency, f"{site.base_url} answered ping in {latency}")


def _unreachable(name: str, site: SiteConfig, exc: BaseException) -> CheckResult:
    if (cert := _cert_problem(exc)) is not None:
        return _result("site.reachable", name, "fail", "untrusted certificate",
                       f"{site.base_url}: {cert.verify_message or cert}", ErrorCode.CONNECTION,
                       f"Renew the site's certificate, or set sites.{name}.ca_bundle to the CA that signed it.")
    reason = str(exc) or type(exc).__name__
    return _result("site.reachable", name, "fail", "unreachable", f"{site.base_url}: {type(exc).__name__}: {reason}",
                   ErrorCode.CONNECTION, unreachable_fix(name, site))


def unreachable_fix(name: str, site: SiteConfig) -> str:
    """ERP001 with the site's own URL (never a literal placeholder)."""
    return (f"Check sites.{name}.url ({site.base_url}), DNS and the firewall from this host: "
            f"`curl -I {site.base_url}/api/method/ping`.")


async def check_authenticated(name: str, connector: Connector | None, limit_s: float) -> CheckResult:
    check = "site.authenticated"
    if connector is None:
        return _result(check, name, "fail", "no credentials", f"no API key/secret is configured for {name}",
                       ErrorCode.AUTHENTICATION, f"Run `erpsync-tui secrets set {name}` with the sync user's API key.")
    try:
        user = await asyncio.wait_for(connector.whoami(), limit_s)
    except AuthenticationFailed as exc:
        return _result(check, name, "fail", "rejected", str(exc), ErrorCode.AUTHENTICATION,
                       f"The key or secret for {name} is wrong or revoked: generate new keys for the sync user, "
                       f"then `erpsync-tui secrets set {name}` (and restart serve).")
    except PermissionDenied as exc:
        return _result(check, name, "fail", "permission missing", str(exc), ErrorCode.AUTHENTICATION, exc.quick_fix)
    except RateLimited as exc:  # the site refuses everyone for now: not a verdict on the credentials
        return _result(check, name, "warn", "not tested", f"rate limited: {exc}", ErrorCode.RATE_LIMIT)
    except ConnectorError as exc:
        # PermissionDenied carries ERP002 too; connection errors carry their own code (the connection step
        # will already have failed for the same reason).
        return _result(check, name, "fail", "not tested" if exc.code != ErrorCode.AUTHENTICATION else "rejected",
                       f"could not prove the credentials: {exc}", exc.code)
    except TimeoutError:
        return _result(check, name, "fail", "no answer", f"whoami did not answer within {limit_s:g} s",
                       ErrorCode.TIMEOUT)
    return _result(check, name, "ok", user, f"authenticated as {user}")


async def check_doctypes(name: str, connector: Connector | None, doctypes: Iterable[str], limit_s: float
                         ) -> CheckResult:
    """Each configured doctype exists on the site and the sync user may read it (one row of each)."""
    from erpsync_tui.engine.preflight import check_doctype

    check = "site.doctypes"
    wanted = list(doctypes)
    if connector is None:
        return _result(check, name, "ok", "not tested", "no credentials: see site.authenticated")
    try:
        found = await asyncio.wait_for(asyncio.gather(*(check_doctype(name, connector, d) for d in wanted)),
                                       limit_s * 2)
    except TimeoutError:
        return _result(check, name, "fail", "no answer",
                       f"listing the doctypes did not answer within {limit_s * 2:g} s", ErrorCode.TIMEOUT)
    problems = [p for p in found if p is not None]
    if any(p.code == str(ErrorCode.AUTHENTICATION) and "HTTP 401" in p.message for p in problems):
        return _result(check, name, "ok", "not tested", "the credentials are refused: see site.authenticated")
    if problems:
        first = problems[0]
        return _result(check, name, "fail", f"{len(problems)} of {len(wanted)} doctypes",
                       "; ".join(p.message for p in problems), ErrorCode(first.code), first.fix)
    return _result(check, name, "ok", f"{len(wanted)} doctypes", f"readable on {name}: {', '.join(wanted)}")


def check_circuit(name: str, state: str | None, detail: str = "") -> CheckResult:
    check = "site.circuit"
    if state is None:
        return _result(check, name, "ok", "unknown", detail or "no running engine reports its circuit state")
    if state == "open":
        return _result(check, name, "fail", "open", detail or "requests to the site are refused after repeated "
                       "failures", ErrorCode.CONNECTION)
    if state == "half_open":
        return _result(check, name, "warn", "half_open", detail or "one trial request will decide whether the site "
                       "is back", ErrorCode.CONNECTION)
    return _result(check, name, "ok", state, detail)


def _circuit_detail(connector: Connector) -> str:
    circuit = getattr(connector, "circuit", None)
    if circuit is None:
        return ""
    snap = circuit.snapshot()
    return (f"{snap.consecutive_failures} consecutive failures, opened {snap.times_opened} times, "
            f"{snap.rejected} requests refused")


CLOCK_SKEW_MAX_SECONDS = 5.0  # latest_timestamp compares the two sites' clocks: a larger skew picks wrong winners


async def check_clock_skew(config: AppConfig) -> CheckResult:
    """Each site's server time (its HTTP Date header) against the other's and ours."""
    from email.utils import parsedate_to_datetime

    check = "sites.clock"
    times: dict[str, datetime] = {}
    for name in config.pair:
        site = config.sites[name]
        try:
            context = await asyncio.to_thread(_client_context, site.verify_tls, site.ca_bundle)
            async with httpx.AsyncClient(verify=context, timeout=_probe_timeout(site)) as client:
                response = await client.get(f"{site.base_url}/api/method/ping")
            dates = response.headers.get_list("date")
            if dates:
                times[name] = parsedate_to_datetime(dates[-1]).astimezone(UTC)
        except (httpx.HTTPError, OSError, ValueError, TypeError):
            continue
    if len(times) < 2:
        return _result(check, "sites", "ok", "unknown", "a site did not tell its time (no Date header, or "
                       "unreachable: see site.reachable)")
    now = utcnow()
    (a, ta), (b, tb) = times.items()
    skew = (tb - ta).total_seconds()
    told = "; ".join(f"{n} {t:%Y-%m-%d %H:%M:%S} UTC" for n, t in times.items()) + f"; this host {now:%H:%M:%S} UTC"
    value = f"{abs(skew):.0f} s"
    if abs(skew) > CLOCK_SKEW_MAX_SECONDS:
        ahead = b if skew > 0 else a
        return _result(check, "sites", "fail", value, f"{ahead} is {abs(skew):.0f} s ahead of the other: {told}",
                       ErrorCode.RECONCILIATION,
                       "Synchronise both sites' clocks (NTP: `timedatectl set-ntp true`); conflict_resolution "
                       "latest_timestamp compares their `modified` stamps.")
    return _result(check, "sites", "ok", value, told)


# ============================================================================================ receiver


async def check_receiver(config: AppConfig) -> CheckResult:
    check, hooks = "receiver.listening", config.webhooks
    if not hooks.enabled:
        return _result(check, "webhooks", "warn", "disabled",
                       "webhooks.enabled is false: changes arrive only with the incremental sync every "
                       f"{config.scheduler.incremental_sync_interval_seconds:g} s", ErrorCode.WEBHOOK,
                       "Set webhooks.enabled: true and point the sites' Webhook doctype at the receiver.")
    # A wildcard bind address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(hooks.host, hooks.host)
    where = f"{hooks.host}:{hooks.port}"
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, hooks.port), RECEIVER_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        return _result(check, "webhooks", "fail", "not listening", f"nothing accepts connections on {where}: "
                       f"{exc or type(exc).__name__}", ErrorCode.WEBHOOK,
                       "The receiver runs inside the engine: start it with `erpsync-tui serve`; if it runs, check "
                       "webhooks.host/port and that no other program holds the port.")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return _result(check, "webhooks", "ok", f"listening on {where}", f"{where} accepts connections")
