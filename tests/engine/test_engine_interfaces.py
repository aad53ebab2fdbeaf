"""The bulk path (and reconcile, matching) use the engine's public methods only, and keep no state on it.

`SyncEngine`'s docstring lists what they may use; its underscored methods are its own and its mixins'.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import erpsync_tui.engine
from erpsync_tui.engine.caches import EngineCaches
from erpsync_tui.engine.sync import SyncEngine

ENGINE = Path(erpsync_tui.engine.__file__).parent
USERS = ["bulk.py", "bulk_batch.py", "eligibility.py", "summary.py", "batch_pool.py", "reconcile.py", "matching.py"]
PUBLIC = ["fetch", "fetched", "canonical", "lock", "name_mapper", "target_body", "sync_document", "resolve", "other"]


def is_engine(node: ast.expr) -> bool:
    """`engine`, `engine_` or `self.engine`: how these modules name the SyncEngine they were given."""
    return (isinstance(node, ast.Name) and node.id in ("engine", "engine_")) or (
        isinstance(node, ast.Attribute) and node.attr == "engine")


def reaches_in(source: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        private = node.attr.startswith("_") and not node.attr.endswith("__")
        if (private and is_engine(node.value)) or node.attr == "__dict__":
            found.append((node.lineno, f"line {node.lineno}: .{node.attr}"))
    return [text for _, text in sorted(found)]


@pytest.mark.parametrize("module", USERS)
def test_module_uses_only_the_engine_s_public_surface(module: str) -> None:
    assert reaches_in((ENGINE / module).read_text(encoding="utf-8")) == []


def test_the_check_sees_a_reach_into_the_engine() -> None:
    """Guards the test: the two habits it forbids are found where they occur."""
    source = "def f(engine, self):\n    engine._canonical(1)\n    engine.__dict__.setdefault('x', {})\n" \
             "    self.engine._fetched(2)\n    engine.canonical(3)\n"
    assert reaches_in(source) == ["line 2: ._canonical", "line 3: .__dict__", "line 4: ._fetched"]


def test_the_public_surface_exists() -> None:
    for name in PUBLIC:
        assert callable(getattr(SyncEngine, name)), name
        assert not hasattr(SyncEngine, f"_{name}"), f"_{name} is public now: one name for it"
    assert set(EngineCaches.__dataclass_fields__) == {"bulk_eligible", "rows_checked", "named_by_field"}
