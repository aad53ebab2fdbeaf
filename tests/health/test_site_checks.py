"""Per-site checks against the simulator: reachable, authenticated, TLS, verify_tls, circuit."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine import health
from erpsync_tui.sim import SimCluster

from .conftest import free_port


def site_config(url: str, **options: object) -> SiteConfig:
    return SiteConfig.model_validate({"url": url, "timeout_seconds": 2.0, **options})


# ============================================================================================ reachable


async def test_reachable_ok_measures_latency(sim: SimCluster) -> None:
    result = await health.check_reachable("cloud", site_config(sim["cloud"].url))
    assert (result.status, result.step, result.error_code) == ("ok", "connection", None)
    assert result.value.endswith(" ms")


async def test_reachable_closed_port_fails_erp001() -> None:
    result = await health.check_reachable("cloud", site_config(f"http://127.0.0.1:{free_port()}"))
    assert (result.status, result.error_code, result.value) == ("fail", "ERP001", "unreachable")
    assert "curl" in result.quick_fix  # ERP001's quick fix


async def test_reachable_dropped_connection_fails_erp001(sim: SimCluster) -> None:
    sim["cloud"].set_faults(drop=True)
    result = await health.check_reachable("cloud", site_config(sim["cloud"].url))
    assert (result.status, result.error_code) == ("fail", "ERP001")


async def test_reachable_hanging_site_fails_erp007(sim: SimCluster) -> None:
    sim["cloud"].set_faults(hang=True)
    result = await health.check_reachable("cloud", site_config(sim["cloud"].url, timeout_seconds=0.3))
    assert (result.status, result.error_code, result.value) == ("fail", "ERP007", "no answer")
    assert "0.3 s" in result.detail


async def test_reachable_is_not_fooled_by_revoked_credentials(sim: SimCluster) -> None:
    # The probe sends no credentials: reachability and authentication are separate triage steps.
    sim["cloud"].set_faults(revoked=True)
    assert (await health.check_reachable("cloud", site_config(sim["cloud"].url))).status == "ok"


# ============================================================================================ authenticated


async def test_authenticated_ok(connectors: dict[str, FrappeConnector]) -> None:
    result = await health.check_authenticated("cloud", connectors["cloud"], 2.0)
    assert (result.status, result.step) == ("ok", "authentication")
    assert result.value and result.value != "Guest"


async def test_authenticated_revoked_fails_erp002(sim: SimCluster, connectors: dict[str, FrappeConnector]) -> None:
    sim["cloud"].set_faults(revoked=True)
    result = await health.check_authenticated("cloud", connectors["cloud"], 2.0)
    assert (result.status, result.error_code, result.value) == ("fail", "ERP002", "rejected")
    assert "secrets set" in result.quick_fix


async def test_authenticated_without_credentials_fails_erp002() -> None:
    result = await health.check_authenticated("cloud", None, 2.0)
    assert (result.status, result.error_code) == ("fail", "ERP002")
    assert "erpsync-tui secrets set cloud" in result.quick_fix


async def test_authenticated_hanging_site_fails_erp007(sim: SimCluster, connectors: dict[str, FrappeConnector]) -> None:
    sim["cloud"].set_faults(hang=True)
    result = await health.check_authenticated("cloud", connectors["cloud"], 0.3)
    assert (result.status, result.error_code) == ("fail", "ERP007")


# ============================================================================================ circuit


async def test_circuit_closed_open_half_open(connectors: dict[str, FrappeConnector]) -> None:
    connector = connectors["cloud"]
    breaker = connector.circuit
    assert health.check_circuit("cloud", connector.circuit_state).status == "ok"
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    opened = health.check_circuit("cloud", connector.circuit_state)
    assert (opened.status, opened.error_code, opened.value, opened.step) == ("fail", "ERP001", "open", "connection")
    breaker.opened_at = (breaker.opened_at or 0.0) - breaker.reset_timeout  # the cool-down has passed
    half = health.check_circuit("cloud", connector.circuit_state)
    assert (half.status, half.value) == ("warn", "half_open")


# ============================================================================================ TLS


def test_verify_tls_off_is_a_loud_warning() -> None:
    on = health.check_tls_verify("cloud", site_config("https://erp.example.com"))
    off = health.check_tls_verify("cloud", site_config("https://erp.example.com", verify_tls=False))
    assert on.status == "ok"
    assert (off.status, off.value, off.step) == ("warn", "OFF", "connection")
    assert "NOT verified" in off.detail and "ca_bundle" in off.quick_fix


async def test_tls_plain_http_on_loopback_is_ok_elsewhere_a_warning(sim: SimCluster) -> None:
    loopback = await health.check_tls_expiry("cloud", site_config(sim["cloud"].url), 14)
    assert (loopback.status, loopback.value) == ("ok", "loopback, no TLS")
    remote = await health.check_tls_expiry("cloud", site_config("http://erp.example.com"), 14)
    assert (remote.status, remote.value, remote.error_code) == ("warn", "no TLS", "ERP001")


def test_tls_days_arithmetic() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert health.days_left(now + timedelta(days=87, hours=5), now) == 87
    ok = health.tls_days_result("cloud", now + timedelta(days=87, hours=5), 14, now)
    assert (ok.status, ok.value) == ("ok", "87 days")
    soon = health.tls_days_result("cloud", now + timedelta(days=3), 14, now)
    assert (soon.status, soon.value, soon.error_code) == ("warn", "3 days", "ERP001")
    gone = health.tls_days_result("cloud", now - timedelta(seconds=1), 14, now)
    assert (gone.status, gone.value) == ("fail", "expired")
    assert "Renew" in gone.quick_fix


def test_asn1_times() -> None:
    assert health.parse_asn1_time(0x17, "491231235959Z") == datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert health.parse_asn1_time(0x17, "500101000000Z").year == 1950
    assert health.parse_asn1_time(0x18, "21060207062815Z") == datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
    with pytest.raises(ValueError):
        health.certificate_not_after(b"\x30\x03\x02\x01\x00")


# A real TLS server on loopback with a self-signed certificate. `cryptography` is not a dependency of the
# project (present in this venv through another package); without it these tests skip and the arithmetic
# tests above still cover the verdicts.

TlsServer = Callable[[timedelta], Awaitable[tuple[int, Path]]]


def write_self_signed(folder: Path, not_after: datetime) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    not_before = min(not_after, datetime.now(UTC)) - timedelta(days=30)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    servers: list[asyncio.Server] = []

    async def start(valid_for: timedelta) -> tuple[int, Path]:
        cert_file, key_file = write_self_signed(tmp_path, datetime.now(UTC) + valid_for)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1]), cert_file

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("valid_for", "status", "value"),
    [(timedelta(days=90, hours=1), "ok", "90 days"), (timedelta(days=5, hours=1), "warn", "5 days"),
     (timedelta(days=-2), "fail", "expired")],
)
async def test_tls_expiry_against_a_real_tls_server(
    tls_server: TlsServer, valid_for: timedelta, status: str, value: str
) -> None:
    port, _cert = await tls_server(valid_for)
    # verify_tls stays on: the expiry is read even from a certificate nobody trusts (trust is site.reachable's).
    result = await health.check_tls_expiry("cloud", site_config(f"https://127.0.0.1:{port}"), 14)
    assert (result.status, result.value, result.step) == (status, value, "connection")


async def test_reachable_names_an_untrusted_certificate(tls_server: TlsServer) -> None:
    port, _cert = await tls_server(timedelta(days=90))
    result = await health.check_reachable("cloud", site_config(f"https://127.0.0.1:{port}"))
    assert (result.status, result.error_code, result.value) == ("fail", "ERP001", "untrusted certificate")
    assert "ca_bundle" in result.quick_fix


async def test_tls_expiry_closed_port_fails() -> None:
    result = await health.check_tls_expiry("cloud", site_config(f"https://127.0.0.1:{free_port()}"), 14)
    assert (result.status, result.error_code) == ("fail", "ERP001")
