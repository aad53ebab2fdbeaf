"""`console.keymap` checked against the console's own binding ids.

Textual's `App.set_keymap` ignores an id it does not know and lets a remapped key shadow another binding of the
same screen without a word. For an operator that is a key that silently does nothing at 3 a.m.; the product's
rule for config.yaml is that a mistake is an error naming its key and line, so the keymap follows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from textual.binding import Binding


def _own_bindings(cls: type) -> list[Binding]:
    """The `Binding`s a class declares or inherits (Textual merges BINDINGS along the MRO the same way)."""
    found: list[Binding] = []
    for base in reversed(cls.__mro__):
        found += [b for b in base.__dict__.get("BINDINGS", ()) if isinstance(b, Binding)]
    return found


def binding_scopes() -> dict[str, list[Binding]]:
    """Bindings by where they apply: "app" on every screen, then each screen of the console by its mode name."""
    from erpsync_tui.tui import modals
    from erpsync_tui.tui.app import ConsoleApp

    scopes = {"app": _own_bindings(ConsoleApp)}
    scopes.update({mode: _own_bindings(screen) for mode, screen in ConsoleApp.MODES.items()})
    for modal in (modals.ConfirmScreen, modals.PromptScreen, modals.TextEditScreen, modals.TextViewScreen,
                  modals.HelpScreen):
        scopes[modal.__name__] = _own_bindings(modal)
    return scopes


def _keys(spec: str) -> set[str]:
    return {key.strip() for key in spec.split(",") if key.strip()}


def keymap_problems(keymap: Mapping[str, str], scopes: Mapping[str, Iterable[Binding]] | None = None
                    ) -> list[tuple[str, str]]:
    """(key path, message) for each keymap entry that names no binding id or takes a key already in use there."""
    scopes = {name: list(bindings) for name, bindings in (scopes or binding_scopes()).items()}
    known = {b.id for bindings in scopes.values() for b in bindings if b.id}
    effective = {name: [(b.id, _keys(keymap.get(b.id, b.key) if b.id else b.key)) for b in bindings]
                 for name, bindings in scopes.items()}
    problems: list[tuple[str, str]] = []
    for binding_id, spec in keymap.items():
        path = f"console.keymap.{binding_id}"
        if binding_id not in known:
            problems.append((path, f"{binding_id!r} is not a binding id of the console (one of: "
                                   f"{', '.join(sorted(known))})"))
            continue
        if not _keys(str(spec)):
            problems.append((path, "names no key"))
            continue
        clash = _first_clash(binding_id, _keys(str(spec)), effective)
        if clash:
            problems.append((path, clash))
    return problems


def _first_clash(binding_id: str, keys: set[str], effective: Mapping[str, list[tuple[str | None, set[str]]]]
                 ) -> str | None:
    """Another binding the same key would reach where this one applies: an app binding applies on every screen;
    a screen's binding on its screen, beside the app's."""
    homes = {name for name, bindings in effective.items() if any(i == binding_id for i, _ in bindings)}
    active = set(effective) if "app" in homes else homes | {"app"}
    for name, bindings in effective.items():
        if name not in active:
            continue
        for other_id, other_keys in bindings:
            taken = keys & other_keys
            if other_id != binding_id and taken:
                where = "every screen" if name == "app" else f"the {name} screen"
                return (f"key {sorted(taken)[0]!r} is already bound on {where} "
                        f"({other_id or 'a binding without an id'}); pick another key or remap that one too")
    return None
