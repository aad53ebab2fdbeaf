"""Console themes: TOML files (`name`, `dark` and Textual's colour keys) found in the theme directories."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable
from pathlib import Path

from textual.theme import Theme

from erpsync_tui.config import bundled_themes_dir, user_config_dir

log = logging.getLogger("erpsync.tui")

DEFAULT_THEME = "erpsync-dark"
COLOUR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel", "warning",
               "error", "success", "boost")


def theme_dirs() -> tuple[Path, ...]:
    """User themes first (they shadow bundled ones of the same name), then the bundled `themes/`."""
    return (user_config_dir() / "themes", bundled_themes_dir())


def theme_from_toml(path: Path) -> Theme:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least `primary`")
    colours = {key: str(data[key]) for key in COLOUR_KEYS if key in data}
    return Theme(name=str(data.get("name") or path.stem), dark=bool(data.get("dark", True)), **colours)


def load_themes(dirs: Iterable[Path] | None = None) -> dict[str, Theme]:
    """Every readable theme by name; the first directory that defines a name wins. Bad files are logged."""
    themes: dict[str, Theme] = {}
    for folder in dirs if dirs is not None else theme_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_toml(path)
            except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
                log.warning("ignoring theme file %s: %s", path, exc)
                continue
            themes.setdefault(theme.name, theme)
    return themes
