"""Faults switched on and off at runtime, via Python and via the loopback admin endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sim_helpers import api_client, assert_frappe_error

from erpsync_tui.sim import Faults, SimSite

Switch = Callable[..., None]


@pytest.fixture(params=["python", "admin"])
def switch(request: pytest.FixtureRequest, site: SimSite) -> tuple[Switch, Callable[[], None]]:
    """(set faults, clear faults) through either control surface."""
    if request.param == "python":
        return (lambda **kw: site.set_faults(**kw)), site.clear_faults

    def set_admin(**kw: object) -> None:
        response = httpx.post(f"{site.url}/_sim/faults", json=kw)
        assert response.status_code == 200 and all(response.json()["faults"][k] == v for k, v in kw.items())

    def clear_admin() -> None:
        assert httpx.delete(f"{site.url}/_sim/faults").json()["faults"] == Faults().as_dict()

    return set_admin, clear_admin


def timed_get(client: httpx.Client, path: str = "/api/method/frappe.auth.get_logged_user") -> float:
    started = time.perf_counter()
    assert client.get(path).status_code == 200
    return time.perf_counter() - started


def test_latency(switch: tuple[Switch, Callable[[], None]], client: httpx.Client) -> None:
    set_faults, clear = switch
    set_faults(latency_ms=150.0)
    assert timed_get(client) >= 0.15
    set_faults(latency_ms=0.0, jitter_ms=100.0)
    assert max(timed_get(client) for _ in range(5)) < 0.5
    clear()
    assert timed_get(client) < 0.1


def test_error_rate(switch: tuple[Switch, Callable[[], None]], client: httpx.Client) -> None:
    set_faults, clear = switch
    set_faults(error_rate=0.5)
    statuses = [client.get("/api/resource/Customer").status_code for _ in range(200)]
    assert 60 <= statuses.count(500) <= 140 and set(statuses) == {200, 500}
    set_faults(error_rate=1.0)
    assert_frappe_error(client.get("/api/resource/Customer"), 500, "OperationalError")
    clear()
    assert all(client.get("/api/resource/Customer").status_code == 200 for _ in range(20))


def test_rate_limit_always(switch: tuple[Switch, Callable[[], None]], client: httpx.Client) -> None:
    set_faults, clear = switch
    set_faults(rate_limit_always=True, retry_after=7)
    response = client.get("/api/resource/Customer")
    assert response.status_code == 429
    assert response.text == "Too Many Requests" and response.headers["content-type"].startswith("text/plain")
    assert response.headers["Retry-After"] == "7"
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers)
    clear()
    assert client.get("/api/resource/Customer").status_code == 200


def test_per_key_rps(switch: tuple[Switch, Callable[[], None]], site: SimSite, client: httpx.Client) -> None:
    set_faults, clear = switch
    set_faults(per_key_rps=5.0)
    statuses = [client.get("/api/method/ping").status_code for _ in range(15)]
    assert statuses[:5] == [200] * 5 and 429 in statuses
    limited = client.get("/api/method/ping")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    site.add_api_key("other", "pw")  # another key has its own bucket
    other = httpx.get(f"{site.url}/api/method/ping", headers={"Authorization": "token other:pw"})
    assert other.status_code == 200
    time.sleep(0.25)  # ~1 token refills at 5/s
    assert client.get("/api/method/ping").status_code == 200
    clear()
    assert all(client.get("/api/method/ping").status_code == 200 for _ in range(15))


def test_hang_until_cleared(switch: tuple[Switch, Callable[[], None]], site: SimSite) -> None:
    set_faults, clear = switch
    set_faults(hang=True)
    with api_client(site) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/api/resource/Customer", timeout=0.3)
    result: list[int] = []

    def slow_request() -> None:
        with api_client(site) as waiting:
            result.append(waiting.get("/api/resource/Customer", timeout=5).status_code)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.2)
    assert not result  # still hanging
    clear()
    thread.join(timeout=3)
    assert result == [200]


def test_drop_closes_without_response(switch: tuple[Switch, Callable[[], None]], site: SimSite) -> None:
    set_faults, clear = switch
    set_faults(drop=True)
    with api_client(site) as client:
        with pytest.raises(httpx.TransportError) as caught:
            client.get("/api/resource/Customer")
        assert not isinstance(caught.value, httpx.TimeoutException)
    # The server thread counts the drop just after closing the socket: the client may notice first.
    deadline = time.monotonic() + 2
    while not any(key.endswith(" dropped") for key in site.counters) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(key.endswith(" dropped") for key in site.counters)
    clear()
    with api_client(site) as client:
        assert client.get("/api/resource/Customer").status_code == 200


def test_revoked_key(switch: tuple[Switch, Callable[[], None]], client: httpx.Client) -> None:
    set_faults, clear = switch
    set_faults(revoked=True)
    assert_frappe_error(client.get("/api/method/frappe.auth.get_logged_user"), 401, "AuthenticationError")
    clear()
    assert client.get("/api/method/frappe.auth.get_logged_user").status_code == 200


def test_admin_rejects_unknown_fault_and_reports_stats(site: SimSite) -> None:
    assert httpx.post(f"{site.url}/_sim/faults", json={"bogus": 1}).status_code == 400
    with pytest.raises(ValueError):
        site.set_faults(bogus=1)
    stats = httpx.get(f"{site.url}/_sim/stats").json()
    assert stats["site"] == "cloud" and stats["faults"]["latency_ms"] == 0.0 and "counters" in stats


def test_base_latency_survives_clear() -> None:
    from erpsync_tui.sim import SimCluster

    with SimCluster(["slow"], latency_ms=80.0) as cluster:
        site = cluster["slow"]
        site.clear_faults()
        assert site.faults.latency_ms == 80.0
        with api_client(site) as client:
            assert timed_get(client) >= 0.08


def test_drop_response_runs_the_request_and_loses_the_answer(site: SimSite) -> None:
    site.set_faults(drop_response="/api/resource/Customer")
    with api_client(site) as client:
        with pytest.raises(httpx.TransportError):
            client.post("/api/resource/Customer", json={"customer_name": "Committed"})
        assert client.get("/api/resource/Item").status_code == 200  # other paths answer as usual
    assert site.count("Customer") == 1  # it was inserted; only the answer went missing
    site.clear_faults()
