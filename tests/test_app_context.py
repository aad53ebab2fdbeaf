"""The composition module: the one credential loop and the one way a configuration becomes connectors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import erpsync_tui
from erpsync_tui import secrets
from erpsync_tui.app_context import build_connectors, gather_credentials
from erpsync_tui.config import AppConfig

PACKAGE = Path(erpsync_tui.__file__).parent



def _config() -> AppConfig:
    return AppConfig.model_validate(
        {"sites": {"cloud": {"url": "http://127.0.0.1:1"}, "local": {"url": "http://127.0.0.1:2"}}}
    )


def _give(site: str) -> None:
    key_ref, secret_ref = secrets.site_refs(site)
    secrets.store(key_ref, f"{site}-key")
    secrets.store(secret_ref, f"{site}-secret-value")


def test_missing_credentials_raise_unless_reported() -> None:
    _give("cloud")
    with pytest.raises(secrets.MissingSecret, match="local"):
        gather_credentials(_config())
    missing: list[str] = []
    found = gather_credentials(_config(), on_missing=lambda exc: missing.append(str(exc)))
    assert found == {"cloud": ("cloud-key", "cloud-secret-value")}
    assert len(missing) == 1 and "local" in missing[0]


async def test_connectors_come_from_the_keyring_one_per_synced_site() -> None:
    _give("cloud")
    _give("local")
    connectors = build_connectors(_config())
    try:
        assert sorted(connectors) == ["cloud", "local"]
        assert [c.site for c in connectors.values()] == ["cloud", "local"]
        assert connectors["local"].config.base_url == "http://127.0.0.1:2"
    finally:
        for connector in connectors.values():
            await connector.aclose()


def _calls(name: str) -> set[str]:
    """Package files (relative paths) that call `name(...)`, as a function or a method."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.add(path.relative_to(PACKAGE).as_posix())
    return found


def test_one_place_reads_site_credentials() -> None:
    assert _calls("site_credentials") == {"app_context.py"}


def test_one_place_builds_connectors_from_a_config() -> None:
    assert _calls("FrappeConnector") == {"connectors/frappe.py"}
