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
    "erpsync_tui.store.control",
    "erpsync_tui.connectors",
    "erpsync_tui.engine",
    "erpsync_tui.engine.sync",
    "erpsync_tui.engine.bulk",
    "erpsync_tui.engine.service",
    "erpsync_tui.engine.health",
    "erpsync_tui.webhooks",
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
