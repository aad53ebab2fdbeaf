"""Small modal screens: yes/no confirmation, one-line prompt, help (generated from the active bindings)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive or mutating action; `y` confirms, `n`/`escape` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm_no"),
    ]

    def __init__(self, question: Text | str, *, title: str = "Confirm") -> None:
        super().__init__()
        self.question = question if isinstance(question, Text) else Text(question)
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(Text(self.title_text, style="bold"), classes="dialog-title")
            yield Static(self.question, id="question")
            yield Label(Text("y = yes    n / esc = no", style="bold"), classes="dialog-keys")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class PromptScreen(ModalScreen[str | None]):
    """One line of input (filters, the `:` command line, an edited field value); `escape` cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="prompt_cancel")]

    def __init__(self, title: str, *, value: str = "", placeholder: str = "", hint: str = "") -> None:
        super().__init__()
        self.prompt_title, self.value, self.placeholder, self.hint = title, value, placeholder, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog prompt"):
            yield Label(Text(self.prompt_title, style="bold"), classes="dialog-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input", select_on_focus=False)
            if self.hint:
                yield Label(Text(self.hint), classes="dialog-keys")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextEditScreen(ModalScreen[str | None]):
    """A multi-line value (notes, addresses) in a TextArea: ctrl+s keeps it, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Keep", id="text_edit_save", priority=True),
        Binding("escape", "cancel", "Cancel", id="text_edit_cancel"),
    ]

    def __init__(self, title: str, value: str) -> None:
        super().__init__()
        self.edit_title, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog text-edit"):
            yield Label(Text(self.edit_title, style="bold"), classes="dialog-title")
            yield TextArea(self.value, id="text-edit-area", soft_wrap=True, show_line_numbers=False)
            yield Label(Text("ctrl+s = keep this value for both sites    esc = cancel", style="bold"),
                        classes="dialog-keys")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextViewScreen(ModalScreen[None]):
    """The full text of a long line, a queue error or a field, scrollable; escape / enter closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "Close", id="text_view_close")]

    def __init__(self, title: str, text: Text) -> None:
        super().__init__()
        self.view_title, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog text-view"):
            yield Label(Text(self.view_title, style="bold"), classes="dialog-title")
            with VerticalScroll(id="text-view-body"):
                yield Static(self.text, id="text-view-text")
            yield Label(Text("esc / enter = close", style="bold"), classes="dialog-keys")

    def action_close(self) -> None:
        self.dismiss(None)


def help_lines(bindings: dict[str, ActiveBinding], key_display: dict[str, str]) -> list[tuple[str, str, str]]:
    """(keys, description, where) per action, merged across keys bound to the same action, in binding order."""
    merged: dict[tuple[str, str], list[str]] = {}
    where: dict[tuple[str, str], str] = {}
    rank: dict[tuple[str, str], int] = {}
    for key, active in bindings.items():
        binding = active.binding
        if binding.system:
            continue
        name = binding.description or binding.tooltip or binding.action
        ident = (binding.action, name)
        merged.setdefault(ident, []).append(key_display.get(key, key))
        node = type(active.node).__name__
        where[ident] = "global" if node.endswith("App") else node.removesuffix("Screen").lower() or node
        # This screen's own keys first, then the global ones, then the focused widget's (scrolling, cursor).
        rank[ident] = 0 if node.endswith("Screen") else 1 if node.endswith("App") else 2
        if not active.enabled:
            where[ident] += " (disabled)"
    ordered = sorted(merged, key=lambda ident: rank[ident])
    return [(" / ".join(dict.fromkeys(merged[ident])), ident[1], where[ident]) for ident in ordered]


class HelpScreen(ModalScreen[None]):
    """Every key of the screen underneath, read from its active bindings (so user keymaps show too)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close", id="help_close")]

    def __init__(self, screen_name: str, lines: list[tuple[str, str, str]], *,
                 commands: list[tuple[str, str]] | None = None, about: str = "") -> None:
        super().__init__()
        self.screen_name, self.lines = screen_name, lines
        self.commands, self.about = commands or [], about

    def compose(self) -> ComposeResult:
        table = Text()
        if self.about:
            table.append(self.about + "\n\n", style="italic")
        width = max((len(keys) for keys, _, _ in self.lines), default=4) + 2
        for keys, description, where in self.lines:
            table.append(keys.ljust(width), style="bold")
            table.append(description)
            table.append(f"  ({where})\n", style="dim")
        if self.commands:
            table.append("\nCommands — type : then the name (a prefix is enough)\n", style="bold underline")
            width = max(len(name) for name, _ in self.commands) + 2
            for name, description in self.commands:
                table.append(name.ljust(width), style="bold")
                table.append(description + "\n")
        with Vertical(id="help-dialog", classes="dialog"):
            yield Label(Text(f"Keys — {self.screen_name}", style="bold"), classes="dialog-title")
            with VerticalScroll(id="help-body"):
                yield Static(table, id="help-text")
            yield Label(Text("esc / ? = close", style="bold"), classes="dialog-keys")

    def action_close(self) -> None:
        self.dismiss(None)
