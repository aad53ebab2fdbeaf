"""Logs: the file rotates (RotatingFileHandler), HTTP client request lines only at DEBUG, redaction kept, and
`erpsync-tui logs` exports the sync log with filters as text, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from erpsync_tui import secrets
from erpsync_tui.cli import cli
from erpsync_tui.logsetup import configure_logging
from erpsync_tui.store import open_database
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import SyncLog, utcnow


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_the_log_file_rotates_and_stays_redacted(tmp_path: Path, restore_logging: None) -> None:
    secret = "rotation-secret-value-123"
    secrets.register_secret(secret)
    log_file = tmp_path / "serve.log"
    configure_logging("INFO", log_file, stream=False, max_bytes=2000, backups=2)
    for i in range(200):
        logging.getLogger("erpsync.test").info("line %d with %s", i, secret)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["serve.log", "serve.log.1", "serve.log.2"]  # rotated, and only `backups` kept
    assert all(p.stat().st_size <= 2200 for p in tmp_path.iterdir())
    assert not any(secret in p.read_text() for p in tmp_path.iterdir())


def test_http_request_lines_only_at_debug(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "serve.log"
    configure_logging("INFO", log_file, stream=False)
    logging.getLogger("httpx").info('HTTP Request: GET http://site/api/resource/Customer "HTTP/1.1 200 OK"')
    logging.getLogger("apscheduler.scheduler").info("Adding job tentatively -- it will be properly scheduled")
    logging.getLogger("erpsync.engine").info("an engine line")
    text = log_file.read_text()
    assert "an engine line" in text and "HTTP Request" not in text and "tentatively" not in text
    configure_logging("DEBUG", log_file, stream=False)
    logging.getLogger("httpx").info('HTTP Request: GET http://site/api/resource/Item "HTTP/1.1 200 OK"')
    assert "HTTP Request: GET http://site/api/resource/Item" in log_file.read_text()


def test_logs_export_filters_and_formats(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    db = open_database(f"sqlite:///{db_path}")
    with db.write() as session:
        add_log(session, "old line", level="INFO")
        add_log(session, "created CUST-1", level="INFO", doctype="Customer", name="CUST-1", outcome="created")
        add_log(session, "dead after 5 attempts", level="ERROR", doctype="Item", name="I-1", outcome="dead",
                error_code="ERP002")
        add_log(session, "conflict", level="WARNING", doctype="Customer", name="CUST-2", outcome="conflict",
                error_code="ERP009")
    with db.write() as session:
        old = session.get(SyncLog, 1)
        old.ts = utcnow() - timedelta(hours=3)
        session.add(old)

    def logs(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--db", str(db_path), "logs", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "old line" in logs() and "old line" not in logs("--since", "1h")
    errors = json.loads(logs("--level", "warning", "--json"))
    assert [r["message"] for r in errors] == ["dead after 5 attempts", "conflict"]
    coded = list(csv.DictReader(io.StringIO(logs("--code", "ERP002", "--format", "csv"))))
    assert [(r["doctype"], r["name"], r["error_code"]) for r in coded] == [("Item", "I-1", "ERP002")]
    assert "ERP009 Customer CUST-2: conflict" in logs("--since", "10m")
