"""`erpsync-tui support-bundle PATH`: the parts are there and no secret is in any of them."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

from erpsync_tui.sim import SimCluster
from erpsync_tui.store import open_database
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueItem


def test_support_bundle_has_every_part_and_no_secret(run, cluster: SimCluster, config_file: Path, tmp_path: Path,
                                                     monkeypatch, isolated_dirs: Path) -> None:
    webhook_secret = "support-webhook-secret-42"
    db_password = "db-password-77"
    monkeypatch.setenv("ERPSYNC_WEBHOOK_SECRET", webhook_secret)
    config_file.write_text(config_file.read_text()
                           + f"database:\n  url: postgresql://erpsync:{db_password}@db.example/erpsync\n")
    secrets = [webhook_secret, db_password, *(s.api_secret for s in cluster.sites.values()),
               *(s.api_key for s in cluster.sites.values())]
    cluster["cloud"].seed(3)
    assert run("sync").exit_code == 0
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    local = cluster["local"]
    with db.write() as session:  # an error that quotes a secret (as a proxy echoing headers would)
        add_log(session, f"proxy said: Authorization: token {local.api_key}:{local.api_secret}", level="ERROR",
                error_code="ERP002")
        session.add(QueueItem(site="local", doctype="Customer", name="X", status="dead", error_code="ERP002",
                              last_error=f"bad secret {local.api_secret}"))
    log_dir = isolated_dirs / "state" / "erpsync-tui" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "serve.log").write_text(f"level=INFO started with {webhook_secret}\n")  # a leak in an old log
    logging.getLogger("test").info("x")
    bundle = tmp_path / "bundle.zip"
    result = run("support-bundle", str(bundle))
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        texts = {name: archive.read(name).decode() for name in names}
    assert {"versions.json", "config.json", "doctor.json", "status.json", "actions.json", "queue-problems.json",
            "sync-log.txt", "serve.log.txt"} <= names
    assert json.loads(texts["versions.json"])["erpsync-tui"]
    assert json.loads(texts["doctor.json"])["checks"]
    assert json.loads(texts["status.json"])["records"]["tracked"] >= 3
    assert "proxy said" in texts["sync-log.txt"] and "bad secret" in texts["queue-problems.json"]
    assert "postgresql://erpsync:***@db.example" in texts["config.json"]
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in {name}"
