"""`console.keymap` is checked against the console's binding ids (issue 17): an unknown id or a key that the screen
already uses is a configuration error with its key path and line, never silently ignored."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from erpsync_tui.cli import cli
from erpsync_tui.tui.keymap import binding_scopes, keymap_problems

REPO = Path(__file__).resolve().parents[2]


def config_with_keymap(tmp_path: Path, keymap_line: str) -> Path:
    """The documented example config with its `keymap: {}` line replaced."""
    text = (REPO / "config.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("keymap:"))
    lines[index] = f"  keymap: {keymap_line}"
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config_check(tmp_path: Path, keymap_line: str) -> tuple[int, str, int]:
    path = config_with_keymap(tmp_path, keymap_line)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith("keymap:"))
    result = CliRunner().invoke(cli, ["--config", str(path), "--db", str(tmp_path / "state.db"), "config", "check"])
    return result.exit_code, result.output, line


def test_an_unknown_binding_id_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    code, output, line = config_check(tmp_path, '{pause: "f9"}')  # the id is pause_resume
    assert code == 2, output
    assert f"line {line}: console.keymap.pause: 'pause' is not a binding id" in output
    assert "pause_resume" in output  # the message lists the ids there are


def test_a_key_the_screen_already_uses_is_a_config_error(tmp_path: Path) -> None:
    code, output, line = config_check(tmp_path, '{pause_resume: "f6"}')  # f6 opens the health screen
    assert code == 2, output
    assert f"line {line}: console.keymap.pause_resume: key 'f6' is already bound on every screen (screen_health)" \
        in output


def test_a_screen_binding_clashes_only_where_it_applies() -> None:
    assert keymap_problems({"retry": "R"}) == [
        ("console.keymap.retry", "key 'R' is already bound on the queue screen (retry_all); pick another key or "
                                 "remap that one too")]
    assert keymap_problems({"retry": "t"}) == []  # `t` is free on the queue screen and on every screen
    assert keymap_problems({"retry": "R", "retry_all": "A"}) == []  # both moved: no clash left
    assert keymap_problems({"sync_now": "y"})[0][1].startswith("key 'y' is already bound on the ConfirmScreen")


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    code, output, _ = config_check(tmp_path, '{retry: "t", pause_resume: "f9"}')
    assert code == 0, output


def test_every_binding_id_the_readme_names_exists() -> None:
    known = {b.id for bindings in binding_scopes().values() for b in bindings if b.id}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for binding_id in ("pause_resume", "sync_now"):
        assert f"[{binding_id}]" in readme and binding_id in known
