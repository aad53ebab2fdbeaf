"""Connection and TLS probes of a site: the client context, loopback, certificate expiry (DER parsing)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from erpsync_tui.config import SiteConfig
from erpsync_tui.engine.health.result import LOOPBACK_NAMES, MAX_PROBE_SECONDS, CheckResult, _result
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store.models import utcnow


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
