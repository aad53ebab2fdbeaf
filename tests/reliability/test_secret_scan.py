"""A full CLI session with failures, then a scan of everything it left behind for any credential.

Two simulator sites get distinctive API keys/secrets (and a distinctive webhook secret), passed only through
ERPSYNC_* environment variables to real `python -m erpsync_tui` processes. The run includes a revoked key,
500s, conflicts, retries, a reconcile, doctor and a `serve` that fails to start. Afterwards no secret value may
appear in any stdout/stderr, in any file under the user's config/data/state dirs (logs live there), or in any
TEXT column of any table of the state database. Also: TLS verification off is announced at every start.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpsync_tui.sim import SimCluster

from .hostile_helpers import all_secret_values, config_text, install_secrets, run_cli


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=5) as sim:
        yield sim


def db_text(db: Path) -> str:
    """Every TEXT-ish value of every table, as one string (blobs decoded leniently)."""
    out: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "sync_record" in tables and "sync_log" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value.decode("utf-8", "replace"))
                    elif isinstance(value, str):
                        out.append(value)
    return "\n".join(out)


def files_text(root: Path) -> dict[Path, str]:
    return {p: p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()}


def test_no_secret_anywhere_after_a_run_with_failures(cluster: SimCluster, tmp_path: Path,
                                                      isolated_dirs: Path) -> None:
    env = install_secrets(cluster)
    config, db = tmp_path / "config.yaml", tmp_path / "state.db"
    with socket.socket() as taken:  # the webhook port is busy: `serve` cannot start its receiver
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config_text(cluster, extra=f"webhooks:\n  port: {port}\n"))
        cloud, local = cluster["cloud"], cluster["local"]
        cloud.seed(4)
        outputs: list[tuple[tuple[str, ...], subprocess.CompletedProcess[str]]] = []

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            result = run_cli(config, db, *args, env=env)
            outputs.append((args, result))
            return result

        assert run("test", "--json").returncode == 0
        local.set_faults(revoked=True)
        assert run("test").returncode == 1
        assert run("sync", "--doctype", "Customer").returncode == 1  # 401s on every write to local
        local.clear_faults()
        local.set_faults(error_rate=1.0)
        assert run("sync", "--json").returncode == 1  # 500s
        local.clear_faults()
        assert run("sync", "--json").returncode in (0, 1)
        # A conflict, so conflicts --json has something to say.
        doc = cloud.insert("Customer", {"customer_name": "Contested", "territory": "France"}, fire_webhooks=False)
        run("sync", "--doctype", "Customer")
        local_name = next(c["name"] for c in local.all("Customer") if c["customer_name"] == "Contested")
        cloud.update("Customer", doc["name"], {"territory": "Japan"}, fire_webhooks=False)
        local.update("Customer", local_name, {"territory": "Greece"}, fire_webhooks=False)
        run("sync", "--doctype", "Customer")
        run("status", "--json")
        assert "territory" in run("conflicts", "--json").stdout
        run("retry", "--failed", "--json")
        local.set_faults(revoked=True)
        run("reconcile", "--doctype", "Customer")
        assert run("doctor", "--json").returncode == 1
        local.clear_faults()
        run("reconcile", "--doctype", "Customer")
        serve = subprocess.run(
            [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", str(db), "serve"],
            capture_output=True, text=True, timeout=60, env={**__import__("os").environ, **env},
        )
        outputs.append((("serve",), serve))
    assert serve.returncode != 0  # it did not start

    secrets = all_secret_values()
    leaks: list[str] = []
    for args, result in outputs:
        for stream_name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            leaks += [f"{args} {stream_name}: {s}" for s in secrets if s in text]
    logs = files_text(isolated_dirs)
    assert any(p.suffix == ".log" for p in logs), f"no log file written under {isolated_dirs}"
    for path, text in logs.items():
        leaks += [f"{path}: {s}" for s in secrets if s in text]
    stored = db_text(db)
    assert "Contested" in stored  # the scan does read the real content
    leaks += [f"state db: {s}" for s in secrets if s in stored]
    # Tracebacks are in stderr, so they were scanned above. Two commands print one today (reconcile with a
    # revoked key, serve on a taken port): see the crash-path tests in test_hostile.py.
    assert not leaks, leaks


@pytest.mark.parametrize("command", ["config-check", "sync", "serve"])
def test_tls_verification_off_is_announced_at_every_start(tmp_path: Path, command: str) -> None:
    config, db = tmp_path / "config.yaml", tmp_path / "state.db"
    config.write_text(config_text(None, verify_tls=False, extra="webhooks:\n  enabled: false\n"))
    args = ("config", "check") if command == "config-check" else (command,)
    env = {"ERPSYNC_CLOUD_API_KEY": "k1", "ERPSYNC_CLOUD_API_SECRET": "s1",
           "ERPSYNC_LOCAL_API_KEY": "k2", "ERPSYNC_LOCAL_API_SECRET": "s2"}
    if command == "serve":
        # Sites are unreachable; serve keeps running, so stop it after the start-up has been logged.
        proc = subprocess.Popen(
            [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", str(db), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, **env},
        )
        try:
            _out, err = proc.communicate(timeout=4)
        except subprocess.TimeoutExpired:
            proc.terminate()
            _out, err = proc.communicate(timeout=20)
    else:
        err = run_cli(config, db, *args, env=env, timeout=60).stderr
    for site in ("cloud", "local"):
        assert f"TLS verification is OFF for site {site}" in err, err[-3000:]
    assert "Traceback" not in err
