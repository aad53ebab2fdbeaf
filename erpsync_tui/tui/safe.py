"""Making ERP-sourced text safe to show: no markup interpretation, no terminal control sequences.

Names, field values, log messages and errors come from ERP sites and are data. They must never be parsed
as Rich/Textual markup (`[bold red]x[/]` shows literally) and must never reach the terminal as control
codes (an ESC from a customer name could move the cursor, retitle the window or plant an OSC 8 link).
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

ELLIPSIS = "…"


def _visible(char: str) -> str:
    code = ord(char)
    if code == 0x1B:
        return "␛"
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control picture" for C0: ␀ … ␟
    if code == 0x7F:
        return "␡"
    if 0x80 <= code <= 0x9F:
        return f"<{code:02X}>"  # C1 controls (CSI, OSC, ST as one byte) have no picture; spell them out
    return char


def neutralise(value: str, *, single_line: bool = True) -> str:
    """`value` with every control character replaced by a visible stand-in.

    With `single_line`, newlines and tabs become ↵ and → so a table cell stays one row; otherwise they
    are kept (a detail pane shows real lines) and only the other controls are replaced.
    """
    out: list[str] = []
    for char in value:
        if not single_line and char in "\n\t":
            out.append(char)
        elif char == "\n":
            out.append("↵")
        elif char == "\t":
            out.append("→")
        elif char == "\r":
            out.append("␍")
        elif ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            out.append(_visible(char))
        else:
            out.append(char)
    return "".join(out)


def display_value(value: Any) -> str:
    """A plain string for any ERP value: None → "", containers as compact JSON, the rest via str()."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def clip(value: str, width: int | None) -> str:
    if width is None or len(value) <= width:
        return value
    return value[: max(width - 1, 0)] + ELLIPSIS


def safe_text(value: Any, style: str = "", *, single_line: bool = True, width: int | None = None) -> Text:
    """The one way ERP text reaches the screen: a Rich `Text` built without markup, controls made visible."""
    return Text(clip(neutralise(display_value(value), single_line=single_line), width), style=style)
