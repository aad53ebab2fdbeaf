"""Helpers for tests and tools that drive the console headless (run_test): screen text, waiting for loads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.app import App


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as plain text lines (styles dropped)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)


async def wait_for(pilot: Any, predicate: Callable[[], bool], limit: float = 10.0, step: float = 0.05) -> None:
    """Let the app run until `predicate()` holds (workers finish, messages land); fail after `limit` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {limit} s:\n{screen_text(pilot.app)}")
        await pilot.pause(step)


async def wait_loaded(pilot: Any, loads: int = 1, limit: float = 10.0) -> None:
    """Until the active screen has finished `loads` polls (more than it had when called)."""
    screen = pilot.app.screen
    target = getattr(screen, "loads", 0) + loads
    await wait_for(pilot, lambda: getattr(screen, "loads", 0) >= target, limit)
