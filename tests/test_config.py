"""config.yaml: the example validates, and each class of mistake gives key path + line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from erpsync_tui.config import ConfigError, find_config_file, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """\
sites:
  cloud:
    url: http://127.0.0.1:8001
  local:
    url: http://127.0.0.1:8002
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("config.yaml"))
    return [str(p) for p in info.value.problems]


def test_documented_example_is_valid() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.pair == ("cloud", "local")
    assert config.sync.doctypes == ["Customer", "Item", "Sales Order"]
    sales = config.policy_for("Sales Order")
    assert sales.conflict_resolution == "manual" and sales.propagate_deletes is False
    assert config.policy_for("Customer").conflict_resolution == "latest_timestamp"
    assert all(site.verify_tls for site in config.sites.values())


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.sites["cloud"].verify_tls is True
    assert config.sites["cloud"].base_url == "http://127.0.0.1:8001"
    assert config.database.url is None


def test_yaml_syntax_error_names_its_line() -> None:
    text = MINIMAL + "sync:\n  doctypes: [Customer, Item\n  batch_size: 3\n"
    (line,) = problems(text)
    assert "YAML syntax error" in line
    assert line.startswith("line 8:") or line.startswith("line 7:")


def test_wrong_type_names_key_and_line() -> None:
    text = MINIMAL + "    timeout_seconds: soon\n"
    (line,) = problems(text)
    assert line.startswith("line 6: sites.local.timeout_seconds:")
    assert "soon" in line


def test_receiver_workers_default_to_in_process_and_are_bounded() -> None:
    assert parse_config(MINIMAL).webhooks.workers == 0
    assert parse_config(MINIMAL + "webhooks:\n  workers: 2\n").webhooks.workers == 2
    (line,) = problems(MINIMAL + "webhooks:\n  workers: -1\n")
    assert line.startswith("line 7: webhooks.workers:")


def test_unknown_key_is_an_error_with_its_line() -> None:
    text = MINIMAL + "sync:\n  batch_sise: 10\n"
    (line,) = problems(text)
    assert line.startswith("line 7: sync.batch_sise: unknown key")


def test_missing_required_key() -> None:
    (line,) = problems("sync:\n  batch_size: 10\n")
    assert "sites: required key is missing" in line


def test_every_problem_reported_once_per_line() -> None:
    text = MINIMAL + "sync:\n  conflict_resolution: newest\n  concurrency: -1\nwebhooks:\n  port: 99999\n"
    lines = problems(text)
    assert len(lines) == 3  # field errors and cross-checks together, in one pass, in line order
    assert lines[0].startswith("line 7: sync.conflict_resolution: 'newest' is not one of")
    assert lines[1].startswith("line 8: sync.concurrency:")
    assert lines[2].startswith("line 10: webhooks.port:")


def test_override_and_link_names_must_be_configured_doctypes() -> None:
    text = MINIMAL + ("sync:\n  doctypes: [Customer, Sales Order]\n  overrides:\n    Sales Ordr:\n"
                      "      conflict_resolution: manual\n    Sales Order:\n      links: {customer: Customer, "
                      "items.item_code: Item}\n  concurrency: -1\n")
    lines = problems(text)
    assert [line.split(":")[0] for line in lines] == ["line 9", "line 12", "line 13"]  # one pass, in line order
    assert "sync.overrides.Sales Ordr: 'Sales Ordr' is not in sync.doctypes" in lines[0]
    assert "sync.overrides.Sales Order.links.items.item_code: links to 'Item'" in lines[1]
    assert "sync.concurrency" in lines[2]


def test_cross_field_policy_names_the_key() -> None:
    text = MINIMAL + "sync:\n  conflict_resolution: remote_wins\n  overrides:\n    Item:\n"
    text += "      conflict_resolution: x\n"
    lines = problems(text)
    assert lines[0].startswith("line 7: sync.conflict_resolution: 'remote_wins' is not one of")
    assert lines[1].startswith("line 10: sync.overrides.Item.conflict_resolution:")


def test_site_policy_names_follow_configured_sites() -> None:
    text = MINIMAL + "sync:\n  conflict_resolution: local_wins\n"
    assert parse_config(text).sync.conflict_resolution == "local_wins"


def test_one_site_is_not_enough() -> None:
    (line,) = problems("sites:\n  cloud:\n    url: http://x\n")
    assert "sites" in line and "at least 2" in line


def test_bad_url_and_zone() -> None:
    text = MINIMAL.replace("http://127.0.0.1:8001", "ftp//nope") + "    timezone: Moon/Base\n"
    lines = problems(text)
    assert any("sites.cloud.url" in line for line in lines)
    assert any("sites.local.timezone: unknown time zone" in line for line in lines)


def test_empty_and_non_mapping_files() -> None:
    assert "empty" in problems("")[0]
    assert "mapping" in problems("- a\n- b\n")[0]


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_dirs: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file() is None
    user = isolated_dirs / "config" / "erpsync-tui" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text(MINIMAL)
    assert find_config_file() == user
    (tmp_path / "config.yaml").write_text(MINIMAL)
    assert find_config_file() == tmp_path / "config.yaml"
    monkeypatch.setenv("ERPSYNC_CONFIG", "/env/config.yaml")
    assert find_config_file() == Path("/env/config.yaml")
    assert find_config_file("/flag/config.yaml") == Path("/flag/config.yaml")


def test_invalid_file_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(MINIMAL + "sync:\n  retry:\n    max_attempts: zero\n")
    result = subprocess.run(
        [sys.executable, "-m", "erpsync_tui", "--config", str(bad), "config", "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "line 8: sync.retry.max_attempts:" in result.stderr


def test_matching_rules_one_list_alternatives_or_off_and_mistakes_name_key_and_line() -> None:
    text = MINIMAL + ("sync:\n  doctypes: [Customer, Item, Sales Order]\n  match:\n"
                      "    Customer: [[tax_id], [customer_name, customer_group]]\n    Item: [item_code]\n"
                      "    Sales Order: []\n")
    config = parse_config(text)
    assert config.policy_for("Customer").match == (("tax_id",), ("customer_name", "customer_group"))
    assert config.policy_for("Item").match == (("item_code",),)
    assert config.policy_for("Sales Order").match == ()  # off
    assert parse_config(MINIMAL).policy_for("Customer").match is None  # the built-in rules
    bad = MINIMAL + ("sync:\n  doctypes: [Customer, Item]\n  match:\n    Customer: [customer_name, [tax_id]]\n"
                     "    Item: [[]]\n    Supplier: [supplier_name]\n    Item2: [\"a b\"]\n")
    lines = problems(bad)
    assert any(line.startswith("line 9: sync.match.Customer: mixes field names and lists") for line in lines), lines
    assert any(line.startswith("line 10: sync.match.Item: an alternative has no fields") for line in lines), lines
    assert any(line.startswith("line 11: sync.match.Supplier: 'Supplier' is not one of sync.doctypes")
               for line in lines), lines
    assert any(line.startswith("line 12: sync.match.Item2: 'a b' is not a field name") for line in lines), lines
