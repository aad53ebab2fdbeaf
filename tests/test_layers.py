"""Layering: the engine, store, connectors and simulator import without the console (Textual)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import erpsync_tui

HEADLESS = [
    "erpsync_tui.config",
    "erpsync_tui.secrets",
    "erpsync_tui.store",
    "erpsync_tui.store.queue",
    "erpsync_tui.store.queries",
    "erpsync_tui.store.control",
    "erpsync_tui.connectors",
    "erpsync_tui.engine",
    "erpsync_tui.engine.sync",
    "erpsync_tui.engine.bulk",
    "erpsync_tui.engine.service",
    "erpsync_tui.engine.health",
    "erpsync_tui.webhooks",
    "erpsync_tui.app_context",
    "erpsync_tui.sim",
    "erpsync_tui.cli",
]


def test_simulator_imports_nothing_from_the_product() -> None:
    """The simulator stands beside the product: it must not lean on the engine it is used to test."""
    code = (
        "import sys, erpsync_tui.sim, erpsync_tui.sim.cli; "
        "bad = [m for m in sys.modules if m.startswith('erpsync_tui.') and not m.startswith('erpsync_tui.sim')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_modules_do_not_load_textual(module: str) -> None:
    code = f"import sys, {module}; assert 'textual' not in sys.modules, 'textual loaded by {module}'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _imported_modules(package_dir: Path) -> list[tuple[str, str]]:
    """(file, module) for every import in a package's files, those inside functions included."""
    found: list[tuple[str, str]] = []
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path.name, node.module))
            elif isinstance(node, ast.Import):
                found.extend((path.name, alias.name) for alias in node.names)
    return found


def test_webhooks_do_not_import_the_engine() -> None:
    """The receiver stores webhooks and counts them; it must run without loading the sync engine (issue 17)."""
    package = Path(erpsync_tui.__file__).parent / "webhooks"
    bad = [(f, m) for f, m in _imported_modules(package) if m.split(".")[:2] == ["erpsync_tui", "engine"]]
    assert not bad, bad
    code = (
        "import sys, erpsync_tui.webhooks; "
        "bad = [m for m in sys.modules if m.startswith('erpsync_tui.engine')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
