"""Health checks and the troubleshooting walk (`erpsync-tui doctor`, the engine's health job, the console).

Every check is a small coroutine returning one `CheckResult`; `run_checks` runs them concurrently, pushes all
database work onto threads (the event loop may be the engine's or the console's), and stores the results in
`health_result`, one row per check and target, updated in place.

`triage` walks the steps an operator should check in order — can we reach the sites, do the credentials work,
is the sync running, is the data correct, is it keeping up — and stops at the first step with a failing check:
fixing a later step is pointless while an earlier one fails (no queue drains while the credentials are revoked).

Step assignment decisions:
- `sync.error_rate` is a *sync_running* check, not a performance one: a sync whose documents keep failing is
  not really running, and the step must surface before "is the data correct" (which it explains).
- `queue.stuck` (in_progress items nobody finishes) is *sync_running*: a hung worker stops progress.
- `database.disk_free` is *sync_running*: a full disk stops every write the engine makes.
- `queue.dead` and `conflicts.open` are *data_correct* warnings: documents that differ and need a person.
- `queue.backlog` is *performance*: work is flowing, just not fast enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import shutil
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func
from sqlmodel import col, select

from erpsync_tui.config import AppConfig, SiteConfig
from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    Connector,
    ConnectorError,
    PermissionDenied,
    RateLimited,
)
from erpsync_tui.errors import ErrorCode, quick_fix
from erpsync_tui.store import control, postgres, queries, sqlite
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import HealthResult, Meta, QueueItem, QueueStatus, SyncLog, utcnow

log = logging.getLogger("erpsync.health")

TRIAGE_STEPS = ("connection", "authentication", "sync_running", "data_correct", "performance")
STEP_QUESTIONS = {
    "connection": "Can we reach the sites?",
    "authentication": "Do the credentials work?",
    "sync_running": "Is the sync running?",
    "data_correct": "Is the data correct?",
    "performance": "Is it keeping up?",
}

# Every check id and the triage step it belongs to; the one place that says which step a check is in.
CHECK_STEPS: dict[str, str] = {
    "site.reachable": "connection",
    "site.tls_expiry": "connection",
    "site.tls_verify": "connection",
    "site.circuit": "connection",
    "site.authenticated": "authentication",
    "site.doctypes": "authentication",
    "database.writable": "sync_running",
    "database.integrity": "sync_running",
    "database.disk_free": "sync_running",  # SQLite
    "database.size": "performance",  # PostgreSQL
    "database.transactions": "sync_running",  # PostgreSQL
    "engine.running": "sync_running",
    "receiver.listening": "sync_running",
    "receiver.secret": "sync_running",
    "receiver.rejected": "sync_running",
    "queue.stuck": "sync_running",
    "sync.error_rate": "sync_running",
    "queue.dead": "data_correct",
    "queue.failed": "data_correct",
    "conflicts.open": "data_correct",
    "sync.reconcile": "data_correct",
    "sites.clock": "data_correct",
    "queue.backlog": "performance",
}

MAX_PROBE_SECONDS = 5.0  # a health probe never waits longer than this, whatever the site's own timeout
DB_TIMEOUT_SECONDS = 15.0  # longer than SQLite's busy timeout (10 s), so a lock wait reports its own error
RECEIVER_TIMEOUT_SECONDS = 2.0
LONG_TRANSACTION_MINUTES = 5.0  # PostgreSQL: a transaction open longer than this is reported (the engine's last ms)
PROBE_KEY = "health_probe_at"  # the meta row the write probe updates
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str  # stable id, e.g. "site.reachable"
    target: str  # what was checked: a site name, "database", "queue", …
    status: str  # ok | warn | fail
    value: str = ""  # the measurement, for humans: "42 ms", "87 days", "12 items"
    detail: str = ""
    error_code: str | None = None
    quick_fix: str = ""
    step: str = "sync_running"  # one of TRIAGE_STEPS

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _result(
    check: str,
    target: str,
    status: str,
    value: str,
    detail: str = "",
    code: ErrorCode | None = None,
    fix: str | None = None,
) -> CheckResult:
    """A result with its step looked up; a non-ok result gets the code's quick fix unless a sharper one is given."""
    if status == "ok":
        code, fix = None, ""
    return CheckResult(
        check=check,
        target=target,
        status=status,
        value=value,
        detail=detail,
        error_code=str(code) if code else None,
        quick_fix=fix if fix is not None else quick_fix(code),
        step=CHECK_STEPS[check],
    )


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _probe_timeout(site: SiteConfig) -> float:
    return min(site.timeout_seconds, MAX_PROBE_SECONDS)


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.cache
def _client_context(verify_tls: bool, ca_bundle: Path | None) -> ssl.SSLContext:
    """The same trust settings the connector uses, so "reachable" means "reachable by the engine".

    Cached: loading a CA store takes tens of milliseconds of blocking work, and the engine runs these checks
    every `scheduler.health_interval_seconds`.
    """
    if not verify_tls:
        return httpx.create_ssl_context(verify=False)
    if ca_bundle is not None:
        return ssl.create_default_context(cafile=str(ca_bundle))
    return httpx.create_ssl_context()


def _cert_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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


def check_tls_verify(name: str, site: SiteConfig) -> CheckResult:
    check = "site.tls_verify"
    if site.verify_tls:
        return _result(check, name, "ok", "on", "certificates are verified")
    return _result(
        check, name, "warn", "OFF",
        f"sites.{name}.verify_tls is false: certificates are NOT verified, so anyone on the network path can "
        "impersonate the site and read the API key in every request",
        ErrorCode.CONNECTION,
        f"Set sites.{name}.ca_bundle to the site's CA (or fix its certificate) and remove verify_tls: false.",
    )


async def check_tls_expiry(name: str, site: SiteConfig, min_days: int, now: datetime | None = None) -> CheckResult:
    check = "site.tls_expiry"
    parts = urlsplit(site.base_url)
    host = parts.hostname or ""
    if parts.scheme != "https":
        if _is_loopback(host):
            return _result(check, name, "ok", "loopback, no TLS", f"{site.base_url} is on this host; HTTP is fine")
        return _result(check, name, "warn", "no TLS",
                       f"{site.base_url} is plain HTTP: the API key crosses the network in clear text",
                       ErrorCode.CONNECTION, f"Serve {name} over https and change sites.{name}.url to https://…")
    port = parts.port or 443
    timeout = _probe_timeout(site)
    try:
        der = await asyncio.wait_for(fetch_certificate(host, port, timeout), timeout)
        not_after = certificate_not_after(der)
    except TimeoutError:
        return _result(check, name, "fail", "no handshake", f"no TLS handshake with {host}:{port} within {timeout:g} s",
                       ErrorCode.TIMEOUT)
    except (OSError, ValueError) as exc:
        return _result(check, name, "fail", "unreadable", f"cannot read the certificate of {host}:{port}: {exc}",
                       ErrorCode.CONNECTION)
    return tls_days_result(name, not_after, min_days, now or utcnow())


def tls_days_result(name: str, not_after: datetime, min_days: int, now: datetime) -> CheckResult:
    """The verdict on a certificate's expiry date (separate from the network part, so it is testable alone)."""
    check, left = "site.tls_expiry", days_left(not_after, now)
    when = f"expires {not_after:%Y-%m-%d %H:%M} UTC"
    renew = f"Renew the TLS certificate of {name} (e.g. `certbot renew`) and reload its web server."
    if not_after <= now:
        return _result(check, name, "fail", "expired", f"the certificate expired {not_after:%Y-%m-%d %H:%M} UTC",
                       ErrorCode.CONNECTION, renew)
    value = "1 day" if left == 1 else f"{left} days"
    if left < min_days:
        return _result(check, name, "warn", value, f"the certificate {when}; alerts.tls_min_days_left is {min_days}",
                       ErrorCode.CONNECTION, renew)
    return _result(check, name, "ok", value, f"the certificate {when}")


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days until expiry (rounded down; negative once expired)."""
    return (not_after - now) // timedelta(days=1)


async def fetch_certificate(host: str, port: int, handshake_s: float) -> bytes:
    """The server's certificate (DER), read without verifying it.

    Unverified on purpose: an expired or untrusted certificate is exactly what this check must still read (trust
    is the reachable check's business). `getpeercert()` returns an empty dict for an unverified peer, so the
    date comes from the DER form instead (`certificate_not_after`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA store to load: nothing is verified here
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host, ssl_handshake_timeout=handshake_s
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise ValueError("the server sent no certificate")
    return bytes(der)


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children, pos = [], start
    while pos < end:
        element = _der_element(data, pos)
        children.append(element)
        pos = element[2]
    return children


def certificate_not_after(der: bytes) -> datetime:
    """notAfter of an X.509 certificate in DER: Certificate → tbsCertificate → validity → notAfter (RFC 5280 §4.1).

    A few lines of DER walking rather than a dependency: the `cryptography` package is not a requirement here.
    """
    try:
        _, start, _ = _der_element(der, 0)
        _, tbs_start, tbs_end = _der_element(der, start)
        fields = _der_children(der, tbs_start, tbs_end)
        if fields and fields[0][0] == 0xA0:  # explicit [0] version: absent in v1 certificates
            fields = fields[1:]
        _, v_start, v_end = fields[3]  # serialNumber, signature, issuer, validity
        tag, t_start, t_end = _der_children(der, v_start, v_end)[1]
        stamp = der[t_start:t_end].decode("ascii")
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an X.509 certificate ({exc})") from None
    return parse_asn1_time(tag, stamp)


def parse_asn1_time(tag: int, stamp: str) -> datetime:
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; years 50–99 are 19xx (RFC 5280 §4.1.2.5.1)
        moment = datetime.strptime(stamp, "%y%m%d%H%M%SZ")
        if moment.year >= 2050:
            moment = moment.replace(year=moment.year - 100)
    elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        moment = datetime.strptime(stamp, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"unexpected ASN.1 time tag {tag:#x}")
    return moment.replace(tzinfo=UTC)


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


# ============================================================================================ store checks
# Synchronous: run_checks sends each of these to a worker thread.


def _db_fix(reason: str) -> str:
    if "readonly" in reason or "read-only" in reason:
        return "Check the permissions of the database file and its folder, and the free disk space."
    if "malformed" in reason or "not a database" in reason or "corrupt" in reason:
        return "The database is corrupt: stop the engine and restore it from a backup (`erpsync-tui backup`)."
    if "locked" in reason:
        return "Another process holds the write lock too long; look for a stuck erpsync-tui or a backup tool."
    return quick_fix(ErrorCode.QUEUE)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _clip(report: str, lines: int = 3) -> str:
    # quick_check lists every damaged cell, one per line: thousands of lines on a badly damaged file.
    rows = [row for row in report.splitlines() if row.strip()]
    more = f" (+{len(rows) - lines} more lines)" if len(rows) > lines else ""
    return "; ".join(rows[:lines]) + more


def check_database_writable(db: Database) -> CheckResult:
    check, started = "database.writable", time.perf_counter()
    try:
        with db.write() as session:  # BEGIN IMMEDIATE on SQLite: the same lock the engine needs
            row = session.get(Meta, PROBE_KEY) or Meta(key=PROBE_KEY, value="")
            row.value = utcnow().isoformat()
            session.add(row)
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "not writable", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    elapsed = f"{(time.perf_counter() - started) * 1000:.0f} ms"
    return _result(check, "database", "ok", elapsed, f"a write transaction on {db.label} committed in {elapsed}")


def check_database_integrity(db: Database) -> CheckResult:
    check = "database.integrity"
    try:
        if db.is_sqlite:
            verdict = sqlite.quick_check(db.reader_engine)
        else:  # the server checks its own pages; ours is whether it answers
            version = postgres.server_health(db.reader_engine).version
            verdict = "ok"
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unreadable", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    if verdict != "ok":
        return _result(check, "database", "fail", "corrupt", f"PRAGMA quick_check on {db.label}: {_clip(verdict)}",
                       ErrorCode.QUEUE, _db_fix("corrupt"))
    if not db.is_sqlite:
        return _result(check, "database", "ok", "ok", f"PostgreSQL {version} at {db.label} answers")
    return _result(check, "database", "ok", "ok", f"PRAGMA quick_check on {db.label} passed")


def check_database_size(db: Database) -> CheckResult:
    """PostgreSQL's counterpart of disk free: the server's disk is its DBA's, the database's size is ours."""
    check = "database.size"
    try:
        figures = postgres.server_health(db.reader_engine)
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unknown", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    size_mb = figures.size_bytes / (1024 * 1024)
    return _result(check, "database", "ok", f"{size_mb:,.0f} MB",
                   f"{db.label}: {size_mb:,.1f} MB, {figures.connections} connections (retention deletes old "
                   "rows; autovacuum reclaims their space)")


def check_long_transactions(db: Database, max_minutes: float = LONG_TRANSACTION_MINUTES) -> CheckResult:
    """A transaction open for long on the state database holds back autovacuum and may hold row locks the
    engine's writes wait for (a forgotten `BEGIN` in psql, a stuck backup)."""
    check = "database.transactions"
    try:
        oldest = postgres.server_health(db.reader_engine).oldest
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unknown", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    if oldest is None or oldest.seconds < max_minutes * 60:
        age = "none open" if oldest is None else f"oldest {oldest.seconds:.0f} s"
        return _result(check, "database", "ok", age, f"no transaction on {db.label} open longer than "
                       f"{max_minutes:g} min")
    who = f"pid {oldest.pid} ({oldest.application or 'no application name'}, {oldest.state})"
    return _result(check, "database", "warn", f"{oldest.seconds / 60:.0f} min",
                   f"a transaction of {who} has been open {oldest.seconds / 60:.1f} min: {oldest.query[:120]}",
                   ErrorCode.QUEUE,
                   f"Find it with `SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE pid = "
                   f"{oldest.pid}` and end it if it is stuck (`SELECT pg_terminate_backend({oldest.pid})`).")


def check_disk_free(folder: Path, min_free_mb: int) -> CheckResult:
    check = "database.disk_free"
    try:
        free_mb = shutil.disk_usage(folder).free // (1024 * 1024)
    except OSError as exc:
        return _result(check, "database", "fail", "unknown", f"cannot measure free space in {folder}: {exc}",
                       ErrorCode.QUEUE)
    value = f"{free_mb:,} MB free"
    if free_mb < min_free_mb:
        return _result(check, "database", "fail", value,
                       f"{folder} has {free_mb:,} MB free, below alerts.min_free_disk_mb ({min_free_mb:,} MB)",
                       ErrorCode.QUEUE, f"Free space in {folder} (old backups, logs) or move the database; "
                       "the engine stops when the disk is full.")
    return _result(check, "database", "ok", value, f"{folder}: {free_mb:,} MB free")


def check_engine_running(db: Database) -> CheckResult:
    check = "engine.running"
    try:
        status = control.engine_status(db)
    except Exception as exc:
        return _result(check, "engine", "fail", "unknown", f"cannot read the engine lease: {_reason(exc)}",
                       ErrorCode.QUEUE)
    if status.mode == "stopped":
        return _result(check, "engine", "fail", "stopped", "no engine holds the lease on this database",
                       ErrorCode.QUEUE, "Start the engine (`erpsync-tui serve` or its service unit); if it keeps "
                       "stopping, read its log.")
    heartbeat = f"{status.heartbeat_at:%H:%M:%S} UTC" if status.heartbeat_at else "?"
    detail = f"held by {status.holder} on {status.hostname} (pid {status.pid}), last heartbeat {heartbeat}"
    if status.mode == "paused":
        return _result(check, "engine", "fail", "paused", detail + "; paused by an operator: webhooks are stored "
                       "but nothing syncs", ErrorCode.QUEUE,
                       "Resume it when the reason for the pause is gone: `erpsync-tui resume` (`erpsync-tui actions` "
                       "shows who paused it and when).")
    return _result(check, "engine", "ok", status.mode, detail)


def check_backlog(db: Database, backlog_max: int) -> CheckResult:
    check = "queue.backlog"
    try:
        with db.read() as session:
            depth = queries.queue_depth(session)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    pending, failed = depth.by_status.get(QueueStatus.PENDING, 0), depth.by_status.get(QueueStatus.FAILED, 0)
    detail = f"{pending} pending, {failed} waiting to retry (alerts.backlog_max {backlog_max})"
    if depth.oldest_pending_age is not None:
        detail += f"; oldest pending {depth.oldest_pending_age.total_seconds() / 60:.0f} min"
    status = "fail" if depth.backlog > backlog_max else "ok"
    return _result(check, "queue", status, _items(depth.backlog), detail, ErrorCode.QUEUE,
                   "The engine is not keeping up: check site latency and rate limits, or raise sync.concurrency.")


def _count(db: Database, *conditions: Any) -> int:
    with db.read() as session:
        return int(session.exec(select(func.count()).select_from(QueueItem).where(*conditions)).one())


def check_stuck(db: Database, stuck_minutes: float) -> CheckResult:
    check = "queue.stuck"
    cutoff = utcnow() - timedelta(minutes=stuck_minutes)
    try:
        stuck = _count(db, QueueItem.status == QueueStatus.IN_PROGRESS, col(QueueItem.updated_at) < cutoff)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if stuck:
        return _result(check, "queue", "fail", _items(stuck),
                       f"{_items(stuck)} in progress for over {stuck_minutes:g} min (alerts.stuck_item_minutes)",
                       ErrorCode.QUEUE, "A worker hung or died holding them: requeue them from the console's Queue "
                       "screen (requeue stuck) and check the engine's log.")
    return _result(check, "queue", "ok", "0 items", f"nothing in progress for over {stuck_minutes:g} min")


def check_failed(db: Database) -> CheckResult:
    """Failed items wait for their next attempt: documents not in sync now, whatever the reason."""
    check = "queue.failed"
    try:
        failed = _count(db, QueueItem.status == QueueStatus.FAILED)
        top = _top_code(db, QueueStatus.FAILED) if failed else None
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if failed:
        code = _error_code(top)
        return _result(check, "queue", "fail", _items(failed),
                       f"{_items(failed)} failed and wait for their next attempt (most common code {top or '?'})",
                       code, f"`erpsync-tui queue --status failed` shows why; {quick_fix(code)}")
    return _result(check, "queue", "ok", "0 items", "no failed item waiting")


def _top_code(db: Database, status: str) -> str | None:
    with db.read() as session:
        row = session.exec(
            select(QueueItem.error_code, func.count().label("n"))
            .where(QueueItem.status == status, col(QueueItem.error_code).is_not(None))
            .group_by(QueueItem.error_code).order_by(func.count().desc()).limit(1)
        ).first()
    return str(row[0]) if row else None


RECONCILE_KEY = "reconcile_result"  # the meta row: the last reconcile's differences by doctype (JSON)


def record_reconcile(db: Database, differences: dict[str, int], *, source: str) -> None:
    """Keep what the last reconcile found (the scheduled job or the CLI), for doctor and the console."""
    import json

    value = json.dumps({"at": utcnow().isoformat(), "source": source, "differences": differences})
    with db.write() as session:
        row = session.get(Meta, RECONCILE_KEY) or Meta(key=RECONCILE_KEY, value="")
        row.value = value
        session.add(row)


def check_reconcile(db: Database) -> CheckResult:
    import json

    check = "sync.reconcile"
    with db.read() as session:
        row = session.get(Meta, RECONCILE_KEY)
    if row is None:
        return _result(check, "sync", "ok", "not run", "no reconcile has run yet "
                       "(scheduler.reconcile_interval_seconds, `erpsync-tui reconcile`)")
    data = json.loads(row.value)
    found = {d: n for d, n in data.get("differences", {}).items() if n}
    if found:
        listed = ", ".join(f"{d} {n}" for d, n in found.items())
        return _result(check, "sync", "fail", f"{sum(found.values())} differences",
                       f"the reconcile of {data.get('at', '?')[:19]} UTC ({data.get('source')}) found differences: "
                       f"{listed}", ErrorCode.RECONCILIATION)
    return _result(check, "sync", "ok", "0 differences", f"the reconcile of {data.get('at', '?')[:19]} UTC found the "
                   "sites in agreement")


def check_receiver_secret(db: Database) -> CheckResult:
    """The running engine's receiver has a webhook secret (as the engine reports it: its environment, not ours)."""
    check = "receiver.secret"
    status = control.engine_status(db)
    has = status.info.get("webhook_secret")
    if status.mode == "stopped" or has is None:
        return _result(check, "webhooks", "ok", "no receiver", "no running engine reports a receiver")
    if not has:
        return _result(check, "webhooks", "fail", "no secret",
                       f"the receiver of the running engine ({status.holder}) has no webhook secret: it refuses "
                       "every webhook (HTTP 503)", ErrorCode.WEBHOOK,
                       "Give serve the secret — `erpsync-tui secrets set webhook` as its user, or "
                       "ERPSYNC_WEBHOOK_SECRET in its EnvironmentFile — then restart it.")
    return _result(check, "webhooks", "ok", "configured", "the running engine's receiver verifies signatures")


REJECTION_WINDOW_MINUTES = 15
AUTH_REJECTIONS = ("bad_signature", "missing_signature", "no_secret")


def check_receiver_rejected(db: Database) -> CheckResult:
    """Webhooks the running receiver refused recently (a wrong secret on a site shows up only here)."""
    check = "receiver.rejected"
    status = control.engine_status(db)
    recent: dict[str, int] = dict(status.info.get("webhooks_rejected_recent") or {})
    refused = {reason: n for reason, n in recent.items() if n}
    if not refused:
        return _result(check, "webhooks", "ok", "0", f"no webhook refused in the last {REJECTION_WINDOW_MINUTES} min")
    listed = ", ".join(f"{reason} {n}" for reason, n in sorted(refused.items()))
    total = sum(refused.values())
    code = ErrorCode.WEBHOOK
    if any(reason in AUTH_REJECTIONS for reason in refused):
        fix = ("A site signs with another secret: set each site's Webhook secret to `erpsync-tui secrets get webhook "
               "--show` (events it sent meanwhile arrive with the incremental sync).")
    else:
        fix = quick_fix(code)
    return _result(check, "webhooks", "fail", f"{total} refused",
                   f"the receiver refused {total} webhooks in the last {REJECTION_WINDOW_MINUTES} min: {listed}",
                   code, fix)


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


def check_dead(db: Database) -> CheckResult:
    check = "queue.dead"
    try:
        dead = _count(db, QueueItem.status == QueueStatus.DEAD)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if dead:
        return _result(check, "queue", "warn", _items(dead),
                       f"{_items(dead)} gave up after their last attempt; those documents are not in sync",
                       ErrorCode.QUEUE)
    return _result(check, "queue", "ok", "0 items", "no dead items")


def check_open_conflicts(db: Database) -> CheckResult:
    check = "conflicts.open"
    try:
        with db.read() as session:
            n = queries.open_conflict_count(session)
    except Exception as exc:
        return _result(check, "conflicts", "fail", "unknown", f"cannot read conflicts: {_reason(exc)}",
                       ErrorCode.RECONCILIATION)
    if n:
        label = "1 conflict" if n == 1 else f"{n} conflicts"
        return _result(check, "conflicts", "warn", label, f"{label} wait for an operator's decision",
                       ErrorCode.RECONCILIATION, "Resolve them in the console's Conflicts screen or with "
                       "`erpsync-tui conflicts` / `erpsync-tui resolve`.")
    return _result(check, "conflicts", "ok", "0 conflicts", "no open conflicts")


def check_error_rate(db: Database, percent_max: float, window_minutes: int) -> CheckResult:
    """Share of ERROR rows among the sync log rows with an outcome (one per document processed) in the window."""
    check = "sync.error_rate"
    since = utcnow() - timedelta(minutes=window_minutes)
    try:
        total, errors, top_code = _error_counts(db, since)
    except Exception as exc:
        return _result(check, "sync", "fail", "unknown", f"cannot read the sync log: {_reason(exc)}", ErrorCode.QUEUE)
    if total == 0:
        return _result(check, "sync", "ok", "0%", f"no documents processed in the last {window_minutes} min")
    rate = errors * 100 / total
    value = f"{rate:.1f}% ({errors} of {total})"
    if rate > percent_max:
        code = _error_code(top_code)
        detail = (f"{errors} of {total} outcomes in the last {window_minutes} min were errors, over "
                  f"alerts.error_rate_percent ({percent_max:g}%)")
        if top_code:
            detail += f"; most common code {top_code}"
        return _result(check, "sync", "fail", value, detail, code)
    return _result(check, "sync", "ok", value, f"last {window_minutes} min, limit {percent_max:g}%")


def _error_counts(db: Database, since: datetime) -> tuple[int, int, str | None]:
    in_window = (col(SyncLog.ts) >= since, col(SyncLog.outcome).is_not(None))
    is_error = SyncLog.level == "ERROR"
    with db.read() as session:
        total = int(session.exec(select(func.count()).select_from(SyncLog).where(*in_window)).one())
        errors = int(session.exec(select(func.count()).select_from(SyncLog).where(*in_window, is_error)).one())
        top = session.exec(
            select(SyncLog.error_code, func.count().label("n"))
            .where(*in_window, is_error, col(SyncLog.error_code).is_not(None))
            .group_by(SyncLog.error_code)
            .order_by(func.count().desc())
            .limit(1)
        ).first()
    return total, errors, (str(top[0]) if top else None)


def _error_code(value: str | None) -> ErrorCode:
    # The most common code among the errors gives the most useful fix; without one, the queue's.
    try:
        return ErrorCode(value) if value else ErrorCode.QUEUE
    except ValueError:
        return ErrorCode.QUEUE


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


# ============================================================================================ running them


@dataclass(frozen=True, slots=True)
class _Planned:
    check: str
    target: str
    run: Callable[[], Awaitable[CheckResult]]


def _in_thread(function: Callable[..., CheckResult], *args: Any) -> Callable[[], Awaitable[CheckResult]]:
    async def run() -> CheckResult:
        return await asyncio.wait_for(asyncio.to_thread(function, *args), DB_TIMEOUT_SECONDS)

    return run


def _inline(function: Callable[..., CheckResult], *args: Any) -> Callable[[], Awaitable[CheckResult]]:
    """A cheap synchronous check run on the loop itself (no I/O), still inside `_guarded`."""

    async def run() -> CheckResult:
        return function(*args)

    return run


def _site_plan(config: AppConfig, name: str, connector: Connector | None, circuits: Callable[[], Awaitable[CheckResult]]
               ) -> list[_Planned]:
    site = config.sites[name]
    auth_timeout = 2 * _probe_timeout(site)  # whoami may queue behind the engine's own requests
    return [
        _Planned("site.reachable", name, lambda: check_reachable(name, site)),
        _Planned("site.tls_expiry", name, lambda: check_tls_expiry(name, site, config.alerts.tls_min_days_left)),
        _Planned("site.tls_verify", name, _inline(check_tls_verify, name, site)),
        _Planned("site.circuit", name, circuits),
        _Planned("site.authenticated", name, lambda: check_authenticated(name, connector, auth_timeout)),
        _Planned("site.doctypes", name, lambda: check_doctypes(name, connector, config.sync.doctypes, auth_timeout)),
    ]


def _circuit_runner(name: str, connector: Connector | None, db: Database, owned: bool
                    ) -> Callable[[], Awaitable[CheckResult]]:
    """A live connector knows its breaker; a temporary one (doctor) knows nothing, so ask the running engine."""
    if connector is not None and not owned:
        live = connector
        return _inline(lambda: check_circuit(name, live.circuit_state, _circuit_detail(live)))

    def from_lease() -> CheckResult:
        status = control.engine_status(db)
        state = status.circuits.get(name)
        return check_circuit(name, state, f"as reported by the running engine ({status.holder})" if state else "")

    return _in_thread(from_lease)


def _plan(config: AppConfig, db: Database, connectors: Mapping[str, Connector], owned: bool) -> list[_Planned]:
    alerts = config.alerts
    plan: list[_Planned] = []
    for name in config.pair:
        connector = connectors.get(name)
        plan += _site_plan(config, name, connector, _circuit_runner(name, connector, db, owned))
    plan += [
        _Planned("database.writable", "database", _in_thread(check_database_writable, db)),
        _Planned("database.integrity", "database", _in_thread(check_database_integrity, db)),
    ]
    if db.path is not None:  # PostgreSQL's disk is its server's business: its size and old transactions instead
        plan.append(_Planned("database.disk_free", "database",
                             _in_thread(check_disk_free, db.path.parent, alerts.min_free_disk_mb)))
    elif not db.is_sqlite:
        plan += [_Planned("database.size", "database", _in_thread(check_database_size, db)),
                 _Planned("database.transactions", "database", _in_thread(check_long_transactions, db))]
    plan += [
        _Planned("engine.running", "engine", _in_thread(check_engine_running, db)),
        _Planned("receiver.listening", "webhooks", lambda: check_receiver(config)),
        _Planned("queue.stuck", "queue", _in_thread(check_stuck, db, alerts.stuck_item_minutes)),
        _Planned("sync.error_rate", "sync",
                 _in_thread(check_error_rate, db, alerts.error_rate_percent, alerts.error_rate_window_minutes)),
        _Planned("receiver.secret", "webhooks", _in_thread(check_receiver_secret, db)),
        _Planned("receiver.rejected", "webhooks", _in_thread(check_receiver_rejected, db)),
        _Planned("queue.dead", "queue", _in_thread(check_dead, db)),
        _Planned("queue.failed", "queue", _in_thread(check_failed, db)),
        _Planned("conflicts.open", "conflicts", _in_thread(check_open_conflicts, db)),
        _Planned("sync.reconcile", "sync", _in_thread(check_reconcile, db)),
        _Planned("sites.clock", "sites", lambda: check_clock_skew(config)),
        _Planned("queue.backlog", "queue", _in_thread(check_backlog, db, alerts.backlog_max)),
    ]
    return plan


def _selected(check: str, only: set[str] | None) -> bool:
    """`only` names check ids ("site.reachable") or families ("site", "queue")."""
    return only is None or check in only or check.split(".", 1)[0] in only


async def _guarded(planned: _Planned) -> CheckResult:
    """Run one check; whatever it raises becomes its own failing result, never the whole run's."""
    try:
        return await planned.run()
    except TimeoutError:
        return _result(planned.check, planned.target, "fail", "timed out",
                       f"the check did not finish within {DB_TIMEOUT_SECONDS:g} s", ErrorCode.TIMEOUT)
    except Exception as exc:
        log.exception("health check %s %s crashed", planned.check, planned.target)
        return _result(planned.check, planned.target, "fail", "check failed",
                       f"{type(exc).__name__}: {_reason(exc)}", ErrorCode.QUEUE)


def _temporary_connectors(config: AppConfig, credentials: Mapping[str, tuple[str, str]]) -> dict[str, Connector]:
    from erpsync_tui.connectors.frappe import FrappeConnector

    # One attempt, no retries: a doctor run must answer quickly, and a retry would hide a flaky site.
    return {
        name: FrappeConnector(name, config.sites[name], key, secret, max_retries=0)
        for name, (key, secret) in credentials.items()
        if name in config.sites
    }


async def run_checks(
    config: AppConfig,
    db: Database,
    connectors: Mapping[str, Connector] | None,
    *,
    only: set[str] | None = None,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    store: bool = True,
) -> list[CheckResult]:
    """Run every check (or those in `only`) concurrently and store the results; never raises for a failing check.

    Without `connectors` (the doctor CLI), temporary connectors are built from `credentials` (site → key, secret)
    and closed afterwards; circuit states then come from the running engine's lease.
    """
    owned = connectors is None
    live: Mapping[str, Connector] = _temporary_connectors(config, credentials or {}) if owned else connectors or {}
    try:
        plan = [p for p in _plan(config, db, live, owned) if _selected(p.check, only)]
        results = list(await asyncio.gather(*(_guarded(p) for p in plan)))
    finally:
        if owned:
            await asyncio.gather(*(c.aclose() for c in live.values()), return_exceptions=True)
    if store:
        try:
            await asyncio.wait_for(asyncio.to_thread(store_results, db, results, full=only is None),
                                   DB_TIMEOUT_SECONDS)
        except Exception as exc:  # the checks already say what is wrong with the database
            log.warning("could not store health results in %s: %s", db.label, _reason(exc))
    return results


def store_results(db: Database, results: Iterable[CheckResult], *, full: bool = False) -> None:
    """Upsert one health_result row per check and target in one transaction, logging status changes.

    `full`: the results are a complete run, so rows of our checks that were not produced (a site removed from
    the config) are deleted rather than left showing a stale verdict.
    """
    now = utcnow()
    results = list(results)
    with db.write() as session:
        rows = {(r.check, r.target): r for r in session.exec(select(HealthResult)).all()}
        for result in results:
            row = rows.pop((result.check, result.target), None)
            if row is None:
                row = HealthResult(check=result.check, target=result.target)
            elif row.status != result.status:
                _log_change(row.status, result)
            row.status, row.value, row.detail = result.status, result.value, result.detail
            row.error_code, row.quick_fix, row.checked_at = result.error_code, result.quick_fix, now
            session.add(row)
        if full:
            for row in rows.values():
                if row.check in CHECK_STEPS:
                    session.delete(row)


def _log_change(previous: str, result: CheckResult) -> None:
    level = logging.WARNING if result.status != "ok" else logging.INFO
    code = f" {result.error_code}" if result.error_code else ""
    log.log(level, "health %s %s: %s → %s%s: %s", result.check, result.target, previous, result.status, code,
            result.detail)


# ============================================================================================ triage


@dataclass(frozen=True, slots=True)
class TriageVerdict:
    ok: bool  # no failing check at all
    step: str | None  # the first step with a failing check; None when nothing fails
    question: str  # that step's question ("Do the credentials work?"), or "" when nothing fails
    summary: str  # one or two sentences for a human
    failing: tuple[CheckResult, ...] = ()  # the failing checks of `step`
    fixes: tuple[str, ...] = ()  # what to do, one line per distinct fix, "ERP002: …"
    warnings: tuple[CheckResult, ...] = ()  # every warning, whichever step


def triage(results: Iterable[CheckResult]) -> TriageVerdict:
    """Walk TRIAGE_STEPS in order and stop at the first step with a failing check."""
    results = list(results)
    warnings = tuple(r for r in results if r.status == "warn")
    for index, step in enumerate(TRIAGE_STEPS, start=1):
        failing = tuple(r for r in results if r.step == step and r.status == "fail")
        if failing:
            fixes = _fixes(failing)
            names = ", ".join(f"{r.check} {r.target}" + (f" ({r.error_code})" if r.error_code else "") for r in failing)
            summary = f"Step {index} of {len(TRIAGE_STEPS)}, {step} — {STEP_QUESTIONS[step]} No: {names}."
            if fixes:
                summary += f" Fix this first: {fixes[0]}"
            return TriageVerdict(False, step, STEP_QUESTIONS[step], summary, failing, fixes, warnings)
    summary = f"All {len(results)} checks pass."
    if warnings:
        listed = ", ".join(f"{r.check} {r.target} ({r.value})" for r in warnings)
        summary = f"No check fails; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}: {listed}."
    return TriageVerdict(True, None, "", summary, (), _fixes(warnings), warnings)


def _fixes(results: Iterable[CheckResult]) -> tuple[str, ...]:
    lines = (f"{r.error_code}: {r.quick_fix}" if r.error_code else r.quick_fix for r in results if r.quick_fix)
    return tuple(dict.fromkeys(lines))


def results_as_json(results: Iterable[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
