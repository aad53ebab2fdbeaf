"""Layering: the engine, store, connectors and simulator import without the console (Textual)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEADLESS = [
    "erpsync_tui.config",
    "erpsync_tui.secrets",
    "erpsync_tui.store",
    "erpsync_tui.store.queue",
    "erpsync_tui.store.queries",
    "erpsync_tui.cli",
]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_modules_do_not_load_textual(module: str) -> None:
    code = f"import sys, {module}; assert 'textual' not in sys.modules, 'textual loaded by {module}'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
