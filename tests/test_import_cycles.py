"""No import loops inside erpsync_tui: the module graph, read from the source with `ast`, is acyclic.

Top-level and function-level imports both count (a function-level import only hides a loop until that
function runs); imports under `if TYPE_CHECKING:` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import erpsync_tui

PACKAGE = "erpsync_tui"
ROOT = Path(erpsync_tui.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those inside `if TYPE_CHECKING:` bodies (their `else:` still runs)."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        if is_type_checking_block(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(module: str, is_package: bool, tree: ast.AST, known: set[str]) -> set[str]:
    """The package's own modules this module imports when it runs (`from pkg import mod` names mod)."""
    targets: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, is_package, node)
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [name if name in known else base for name in names]
        else:
            continue
        targets.update(name for name in names if name in known and name != module)
    return targets


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in ROOT.rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = imported_modules(module, path.name == "__init__.py", tree, known)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example loop per group of modules that import each other, directly or not."""
    return [example_loop(graph, group) for group in loop_groups(graph)]


def loop_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(set(group))
    return groups


def example_loop(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A readable loop inside one strongly connected group: a shortest path from a member back to itself."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    return sorted(group)


def test_the_graph_sees_the_package() -> None:
    """Guards the test itself: it must find the engine's real imports, or an empty graph would pass."""
    graph = import_graph()
    assert "erpsync_tui.engine.service" in graph
    assert "erpsync_tui.store.db" in graph["erpsync_tui.engine.service"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_type_checking_imports_do_not_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from erpsync_tui import b\nelse:\n    import erpsync_tui.c\n"
    )
    found = imported_modules("erpsync_tui.a", False, ast.parse(source), {"erpsync_tui.b", "erpsync_tui.c"})
    assert found == {"erpsync_tui.c"}


def test_function_level_imports_count() -> None:
    source = "def later():\n    from erpsync_tui.b import thing\n"
    found = imported_modules("erpsync_tui.a", False, ast.parse(source), {"erpsync_tui.b"})
    assert found == {"erpsync_tui.b"}


def test_no_import_cycles_inside_the_package() -> None:
    graph = import_graph()
    loops = [example_loop(graph, set(group)) for group in loop_groups(graph)]
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)
