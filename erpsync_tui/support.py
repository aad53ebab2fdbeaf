"""`erpsync-tui support-bundle PATH`: what a maintainer needs to help, in one zip, with no secret in it.

Contents: versions, the effective configuration (secrets masked, passwords in URLs masked, the secret sources
named), `doctor --json`, `status --json`, the operator actions trail, failed and dead queue items, the recent
sync log and the tail of serve.log. Every text passes through the secret redactor (every secret the
configuration needs is registered with it first) and a mask for `user:password@` in URLs.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import zipfile
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from erpsync_tui import __version__
from erpsync_tui import secrets as secret_store

URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@", re.I)
LIBRARIES = ("textual", "httpx", "sqlalchemy", "sqlmodel", "pydantic", "apscheduler", "starlette", "uvicorn",
             "keyring", "click", "rich")
LOG_LINES = 2000


def scrub(text: str) -> str:
    """Redact registered secrets, then mask passwords inside URLs (a database URL may carry one)."""
    return URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", secret_store.redact(text))


def _json(data: Any) -> str:
    return scrub(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def versions() -> dict[str, Any]:
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {"erpsync-tui": __version__, "python": sys.version, "platform": platform.platform(), "libraries": libs}


def tail(path: Path, lines: int = LOG_LINES) -> str:
    if not path.is_file():
        return f"({path} does not exist)\n"
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 2_000_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def build(path: Path, parts: dict[str, Callable[[], str]]) -> list[str]:
    """Write each part (name → a function giving its text) into the zip; a part that fails says why."""
    written = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, make in parts.items():
            try:
                text = make()
            except Exception as exc:  # one broken part (the database, a site) must not lose the others
                text = f"could not collect {name}: {type(exc).__name__}: {exc}\n"
            bundle.writestr(name, scrub(text))
            written.append(name)
        bundle.writestr("README.txt", f"erpsync-tui support bundle, made {datetime.now().isoformat()}\n"
                        "Secrets are masked; review before sending.\n")
    return written
