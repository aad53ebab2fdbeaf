"""The CLI skeleton: every command answers, and no command ever prints a secret value."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from erpsync_tui.cli import cli

REPO = Path(__file__).resolve().parent.parent
SECRETS = {
    "ERPSYNC_CLOUD_API_KEY": "cloudkey-1111-aaaa",
    "ERPSYNC_CLOUD_API_SECRET": "cloudsecret-2222-bbbb",
    "ERPSYNC_LOCAL_API_KEY": "localkey-3333-cccc",
    "ERPSYNC_LOCAL_API_SECRET": "localsecret-4444-dddd",
    "ERPSYNC_WEBHOOK_SECRET": "webhooksecret-5555-eeee",
}


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "state.db"

    def invoke(*args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, ["--config", str(REPO / "config.yaml"), "--db", str(db), *args], input=input)

    return invoke


def assert_no_secret(result: Result) -> None:
    for value in SECRETS.values():
        assert value not in result.output, f"secret leaked in output: {result.output}"


COMMANDS = [
    ("--help",),
    ("--version",),
    ("config", "check"),
    ("config", "check", "--json"),
    ("config", "paths"),
    ("config", "paths", "--json"),
    ("secrets", "list"),
    ("secrets", "list", "--json"),
    ("secrets", "get", "cloud"),
    ("secrets", "get", "local"),
    ("secrets", "get", "webhook"),
    ("secrets", "delete", "cloud"),
    ("status", "--json"),
    ("conflicts", "--json"),
    ("retry", "--dead", "--json"),
]
# `test`, `sync`, `resolve`, `reconcile` and `doctor` talk to sites: tests/test_cli_engine.py runs them against
# the simulator with the same no-secret check; `demo` and the console open a screen (tests/test_serve.py,
# tests/tui).


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_no_command_prints_a_secret(run, args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert_no_secret(result)


def test_help_lists_every_command_with_a_summary(run) -> None:
    result = run("--help")
    for command in ("backup", "config", "conflicts", "console", "demo", "doctor", "init", "reconcile", "resolve",
                    "retry", "secrets", "serve", "sim", "status", "sync", "test"):
        assert f"  {command} " in result.output


def test_config_check_masks_secrets_and_reports_sources(run) -> None:
    result = run("config", "check", "--json")
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["valid"] is True
    assert data["effective"]["secrets"]["cloud"]["api_secret"].endswith("(environment)")


def test_secrets_set_prompts_without_echo_and_get_masks(run, memory_keyring) -> None:
    typed = "typed-secret-value-9999"
    result = run("secrets", "set", "cloud", input=f"typed-key-value-8888\n{typed}\n{typed}\n")
    assert result.exit_code == 0, result.output
    assert typed not in result.output and "typed-key-value-8888" not in result.output
    assert memory_keyring.store[("erpsync-tui", "cloud:api_secret")] == typed
    shown = run("secrets", "get", "cloud")
    assert typed not in shown.output and "source: keyring" in shown.output
    revealed = run("secrets", "get", "cloud", "--show")
    assert typed in revealed.output  # --show is the explicit, documented exception


def test_unknown_secret_target(run) -> None:
    result = run("secrets", "get", "nowhere")
    assert result.exit_code == 2 and "unknown site" in result.output


def test_init_writes_starter_and_refuses_to_overwrite(run, tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "config.yaml"
    first = run("init", "--path", str(target))
    assert first.exit_code == 0 and target.read_text() == (REPO / "config.yaml").read_text()
    second = run("init", "--path", str(target))
    assert second.exit_code == 1 and "not overwriting" in second.output


def test_init_default_goes_to_user_config_dir(run, isolated_dirs: Path) -> None:
    assert run("init").exit_code == 0
    assert (isolated_dirs / "config" / "erpsync-tui" / "config.yaml").is_file()


def test_backup_command(run, tmp_path: Path) -> None:
    copy = tmp_path / "backup.db"
    result = run("backup", str(copy))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)


def test_bad_database_exits_3_naming_the_file(run, tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_text("not a database")
    result = run("backup", str(tmp_path / "x.db"))
    assert result.exit_code == 3 and str(bad) in result.output
