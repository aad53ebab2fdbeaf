"""Logging: structured `key=value` lines, every record passed through the secret redactor.

The log file rotates by size with the standard library's RotatingFileHandler (LOG_MAX_BYTES, LOG_BACKUPS:
serve.log, serve.log.1 … serve.log.5), so a daemon never fills the disk with its log. For a system logrotate
instead, `watched=True` uses WatchedFileHandler (it reopens the file when logrotate moves it).

HTTP client request lines (httpx, httpcore: one INFO line per request) are shown only at DEBUG: at INFO they
were most of the log.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from erpsync_tui.secrets import RedactingFilter

FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
CHATTY_LOGGERS = ("httpx", "httpcore", "apscheduler.scheduler")  # request lines, "Adding job tentatively"


def configure_logging(level: str = "INFO", log_file: Path | None = None, *, stream: bool = True,
                      max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS, watched: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    debug = root.level <= logging.DEBUG
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    for handler in list(root.handlers):
        if getattr(handler, "_erpsync", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if stream:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if watched:
            handlers.append(logging.handlers.WatchedFileHandler(log_file, encoding="utf-8"))
        else:
            handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups,
                                                                 encoding="utf-8"))
    for handler in handlers:
        handler._erpsync = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
