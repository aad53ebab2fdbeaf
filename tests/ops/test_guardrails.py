"""Guardrails: secrets set without a keyring fails before prompting; sim on a busy port is a clean error; sync
with a wrong secret or a doctype typo stops before any work; Ctrl-C during sync says what was done."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from click.testing import CliRunner
from keyring.backends import fail

from erpsync_tui.cli import cli
from erpsync_tui.sim import SimCluster

REPO = Path(__file__).resolve().parent.parent.parent


def test_secrets_set_without_a_keyring_fails_before_prompting(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring.set_keyring(fail.Keyring())  # the memory_keyring fixture puts its own back afterwards
    result = CliRunner().invoke(cli, ["--config", str(REPO / "config.yaml"), "secrets", "set", "cloud"],
                                input="typed-key\ntyped-secret\ntyped-secret\n")
    assert result.exit_code == 1
    assert "no working OS keyring" in result.output and "ERPSYNC_CLOUD_API_KEY" in result.output
    assert "API key" not in result.output.split("error:")[0]  # nothing was asked before the error


def test_sim_on_a_busy_port_is_a_clean_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "erpsync_tui", "sim", "--sites", f"cloud={port},local=0",
                                 "--seed", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cloud={port}" in result.stderr and "in use" in result.stderr


def test_sync_with_a_wrong_secret_stops_before_any_work(run, cluster: SimCluster, monkeypatch) -> None:
    cluster["cloud"].seed(20)
    monkeypatch.setenv("ERPSYNC_LOCAL_API_SECRET", "wrong-secret")
    result = run("sync")
    assert result.exit_code == 1
    assert result.output.count("error:") == 1 and "[ERP002] local:" in result.output
    assert "secrets set local" in result.output and "nothing was synced" in result.output
    assert cluster["local"].count("Customer") == 0
    queued = json.loads(run("queue", "--status", "pending", "--status", "failed", "--status", "dead",
                            "--json").output)
    assert queued == []  # no item queued for the 401s of 400 creates


def test_sync_and_test_name_a_doctype_typo(run, cluster: SimCluster, config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace("sync:\n", "sync:\n  doctypes: [Customer, Itme]\n"))
    synced = run("sync")
    assert synced.exit_code == 1 and "doctype 'Itme' does not exist on cloud" in synced.output
    tested = run("test")
    assert tested.exit_code == 1 and "ERP003" in tested.output and "Itme" in tested.output


def created_logged(path: Path) -> bool:
    import sqlite3

    if not path.exists():
        return False
    try:
        with sqlite3.connect(path, timeout=1) as conn:
            return bool(conn.execute("SELECT 1 FROM sync_log WHERE outcome = 'created' LIMIT 1").fetchone())
    except sqlite3.Error:
        return False


def test_ctrl_c_during_sync_prints_counts_and_a_resume_hint(tmp_path: Path) -> None:
    import os
    import signal
    import time

    with SimCluster(["cloud", "local"], seed=4, latency_ms=20) as cluster:
        cluster["cloud"].seed(600)
        config = tmp_path / "config.yaml"
        config.write_text("sites:\n" + "".join(f"  {n}:\n    url: {s.url}\n    max_concurrency: 2\n"
                                                  for n, s in cluster.sites.items())
                          + "sync:\n  doctypes: [Customer]\n  batch_size: 20\n")
        env = {**os.environ}
        for name, site in cluster.sites.items():
            env[f"ERPSYNC_{name.upper()}_API_KEY"] = site.api_key
            env[f"ERPSYNC_{name.upper()}_API_SECRET"] = site.api_secret
        proc = subprocess.Popen([sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db",
                                 str(tmp_path / "state.db"), "sync"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not created_logged(tmp_path / "state.db") and time.monotonic() < deadline:
            time.sleep(0.1)  # until a batch's state and log rows are committed
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Aborted!" not in err
    assert "interrupted: this run so far: created" in err and "erpsync-tui sync` again to resume" in err


def test_console_header_says_when_a_sites_key_is_refused() -> None:
    from erpsync_tui.store.control import EngineStatus
    from erpsync_tui.tui.screens.base import header_text

    status = EngineStatus("running", "engine:x", info={"circuits": {"cloud": "closed", "local": "auth_refused"}})
    text = header_text(status, mode="attached", readonly=False, screen="dashboard", width=120).plain
    assert "local ✗KEY REFUSED" in text
