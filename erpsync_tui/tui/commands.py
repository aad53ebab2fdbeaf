"""One registry of console commands, read by the `:` command line, the ctrl+p palette and the help screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from erpsync_tui.tui.app import ConsoleApp

SCREENS = ("dashboard", "conflicts", "queue", "logs", "health", "actions", "matching")


@dataclass(frozen=True, slots=True)
class ConsoleCommand:
    name: str
    help: str
    run: Callable[[ConsoleApp, str], None]  # (app, argument text)
    mutating: bool = False
    takes_argument: str = ""  # shown as `sync [doctype]`


def _show(screen: str) -> Callable[[ConsoleApp, str], None]:
    return lambda app, _arg: app.action_show(screen)


COMMANDS: tuple[ConsoleCommand, ...] = (
    *(ConsoleCommand(name, f"go to the {name} screen", _show(name)) for name in SCREENS),
    ConsoleCommand("pause", "pause the engine (webhooks are still stored)",
                   lambda app, _a: app.submit("pause", {}, target="engine"), mutating=True),
    ConsoleCommand("resume", "resume the engine", lambda app, _a: app.submit("resume", {}, target="engine"),
                   mutating=True),
    ConsoleCommand("sync", "full sync now (all doctypes, or the one named)",
                   lambda app, arg: app.sync_now(arg.strip() or None), mutating=True, takes_argument="[doctype]"),
    ConsoleCommand("requeue-stuck", "give stuck in-progress items back to the queue",
                   lambda app, _a: app.submit("requeue_stuck", {}, target="queue"), mutating=True),
    ConsoleCommand("checks", "run the health checks now", lambda app, _a: app.action_rerun_checks()),
    ConsoleCommand("help", "list the keys of this screen and every : command", lambda app, _a: app.action_help()),
    ConsoleCommand("theme", "switch theme (erpsync-dark, erpsync-light, erpsync-contrast, …)",
                   lambda app, arg: app.use_theme(arg.strip()), takes_argument="<name>"),
    ConsoleCommand("quit", "leave the console (an in-process engine stops cleanly)", lambda app, _a: app.exit()),
)


def command_lines() -> list[tuple[str, str]]:
    """(`:name [argument]`, what it does) for every command: the help screen lists them beside the keys."""
    return [(f":{c.name}" + (f" {c.takes_argument}" if c.takes_argument else ""), c.help) for c in COMMANDS]


def find_command(word: str) -> ConsoleCommand | None:
    """Exact name, else the one command the word is a prefix of (`:con` → conflicts, `:q` → queue)."""
    word = word.lower()
    exact = next((c for c in COMMANDS if c.name == word), None)
    if exact or not word:
        return exact
    matches = [c for c in COMMANDS if c.name.startswith(word)]
    return matches[0] if len(matches) == 1 else None


class ConsoleCommands(Provider):
    """The same commands in the ctrl+p palette; `sync` is offered once per configured doctype too."""

    def _entries(self) -> list[tuple[str, str, Callable[[], None]]]:
        app = cast("ConsoleApp", self.app)  # no runtime import of tui.app: it imports this module (import loop)
        entries: list[tuple[str, str, Callable[[], None]]] = []
        for command in COMMANDS:
            if command.name == "theme":
                for theme in sorted(app.console_themes):
                    entries.append((f"theme {theme}", command.help, partial(command.run, app, theme)))
                continue
            entries.append((command.name, command.help, partial(command.run, app, "")))
            if command.name == "sync":
                for doctype in app.config.sync.doctypes:
                    entries.append((f"sync {doctype}", f"full sync of {doctype} now",
                                    partial(command.run, app, doctype)))
        return entries

    async def discover(self) -> Hits:
        for title, help_text, run in self._entries():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
