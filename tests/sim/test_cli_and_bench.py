"""CLI parsing and a short in-process run of the benchmark load generator."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.bench import run_load, run_raw_load
from erpsync_tui.sim.cli import parse_rate, parse_sites, sim_command


def test_parse_sites_and_rate() -> None:
    assert parse_sites("cloud=8001,local=8002") == {"cloud": 8001, "local": 8002}
    assert parse_sites("a") == {"a": 0}
    assert parse_rate("2/s") == 2.0 and parse_rate("0.5") == 0.5 and parse_rate("120/min") == 2.0
    with pytest.raises(click.BadParameter):
        parse_rate("fast")
    with pytest.raises(click.BadParameter):
        parse_sites("=1")


def test_cli_help_and_option_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(sim_command, ["--help"])
    assert result.exit_code == 0 and "--webhook-secret" in result.output
    args = ["--sites", "a=0", "--webhook", "a=http://x"]
    result = runner.invoke(sim_command, args, env={"ERPSYNC_WEBHOOK_SECRET": ""})
    assert result.exit_code != 0 and "webhook-secret" in result.output


async def test_load_generators_against_a_running_site() -> None:
    with SimCluster(["bench"]) as cluster:
        site = cluster["bench"]
        site.seed(1000)
        result = await run_load(site.url, site.auth_header, seconds=0.3, clients=4)
        raw = await run_raw_load(site.url, site.auth_header, seconds=0.3, clients=4)
    # Only that both generators drive the site without errors: how many requests fit in 0.3 s depends on load.
    assert result.requests > 0 and result.errors == 0 and result.rps > 0
    assert raw.requests > 0 and raw.errors == 0
    assert "sim ceiling:" in result.summary()
