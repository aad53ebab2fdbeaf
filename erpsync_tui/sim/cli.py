"""`erpsync-tui sim`: run simulated ERPNext sites in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import re
import time

import click

from .cluster import SimCluster

DEFAULT_SITES = "cloud=8001,local=8002"


def parse_sites(spec: str) -> dict[str, int]:
    """'cloud=8001,local=8002' → {'cloud': 8001, 'local': 8002}; a bare name gets an ephemeral port."""
    sites: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, port = part.partition("=")
        if not name.strip():
            raise click.BadParameter(f"bad site spec {part!r}", param_hint="--sites")
        try:
            sites[name.strip()] = int(port) if port else 0
        except ValueError:
            raise click.BadParameter(f"bad port in {part!r}", param_hint="--sites") from None
    if not sites:
        raise click.BadParameter("no sites given", param_hint="--sites")
    return sites


def parse_rate(spec: str) -> float:
    """'2/s', '2', '120/min' → requests per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*(s|sec|m|min))?\s*", spec)
    if not match:
        raise click.BadParameter(f"bad rate {spec!r}; use e.g. 2/s or 60/min", param_hint="--traffic")
    value = float(match.group(1))
    return value / 60.0 if match.group(2) in ("m", "min") else value


def parse_pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"expected site=VALUE, got {value!r}", param_hint=option)
        pairs.append((name, rest))
    return pairs


@click.command("sim")
@click.option("--sites", default=DEFAULT_SITES, show_default=True, help="name=port pairs, comma-separated.")
@click.option("--seed", "seed_n", default=500, show_default=True, type=int,
              help="Customers and items to create per empty site (plus n/5 sales orders).")
@click.option("--random-seed", default=0, show_default=True, type=int, help="Seed for all generated data.")
@click.option("--latency-ms", default=5.0, show_default=True, type=float, help="Base latency per request.")
@click.option("--traffic", default=None, help="Background edit rate, e.g. 2/s (off when omitted).")
@click.option("--conflict-share", default=0.2, show_default=True, type=float,
              help="Share of traffic that edits the same document on two sites.")
@click.option("--hostile-share", default=0.1, show_default=True, type=float,
              help="Share of generated values carrying Rich markup, escape sequences or non-Latin text.")
@click.option("--lifecycle-share", default=0.1, show_default=True, type=float,
              help="Share of traffic that makes, submits, cancels or amends orders, renames customers, or deletes "
                   "one without its webhook (as when Frappe gives up).")
@click.option("--persist-dir", default=None, type=click.Path(file_okay=False), help="Keep sites in SQLite files here.")
@click.option("--timezone", "timezones", multiple=True, help="site=Area/City (repeatable); default UTC.")
@click.option("--webhook", "webhooks", multiple=True, help="site=URL to post webhooks to (repeatable).")
@click.option("--webhook-secret", default=None, envvar="ERPSYNC_WEBHOOK_SECRET",
              help="Secret for webhook signatures (env ERPSYNC_WEBHOOK_SECRET).")
def sim_command(
    sites: str,
    seed_n: int,
    random_seed: int,
    latency_ms: float,
    traffic: str | None,
    conflict_share: float,
    hostile_share: float,
    lifecycle_share: float,
    persist_dir: str | None,
    timezones: tuple[str, ...],
    webhooks: tuple[str, ...],
    webhook_secret: str | None,
) -> None:
    """Run simulated ERPNext sites (Frappe REST API v1) on 127.0.0.1 until Ctrl-C."""
    ports = parse_sites(sites)
    zones = dict(parse_pairs(timezones, "--timezone"))
    hooks = parse_pairs(webhooks, "--webhook")
    rate = parse_rate(traffic) if traffic else None
    unknown = {name for name, _ in hooks} - set(ports) | set(zones) - set(ports)
    if unknown:
        raise click.BadParameter(f"unknown site(s): {', '.join(sorted(unknown))}")
    if hooks and not webhook_secret:
        raise click.UsageError("--webhook needs --webhook-secret (or ERPSYNC_WEBHOOK_SECRET)")
    cluster = SimCluster(list(ports), seed=random_seed, latency_ms=latency_ms, ports=ports,
                         persist_dir=persist_dir, timezones=zones)
    for site in cluster:
        if seed_n > 0 and site.count("Customer") == 0:
            site.seed(seed_n)
    for name, url in hooks:
        cluster[name].add_webhook(url, webhook_secret or "")
    try:
        cluster.start()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a port is taken (or not ours to bind): say which, no traceback
        taken = ", ".join(f"{name}={port}" for name, port in ports.items() if port)
        raise click.ClickException(f"cannot listen on 127.0.0.1 ({taken}): {exc.strerror or exc}; pick free "
                                   "ports with --sites, or stop the program holding them") from None
    for site in cluster:
        click.echo(f"{site.name:>8}: {site.url}  api key {site.api_key}  secret {site.api_secret}"
                   f"  (tz {site.timezone}, {site.count('Customer')} customers)")
    click.echo(f"   admin: POST/DELETE {{url}}/_sim/faults, GET {{url}}/_sim/stats   (pid {os.getpid()})")
    if rate:
        cluster.start_traffic(rate, conflict_share=conflict_share, hostile_share=hostile_share,
                              lifecycle_share=lifecycle_share)
        click.echo(f" traffic: {rate:g} ops/s, conflict share {conflict_share:g}, hostile share {hostile_share:g}, "
                   f"lifecycle share {lifecycle_share:g}")
    click.echo("Ctrl-C to stop.")
    try:
        while cluster.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping…")
    finally:
        cluster.close()


if __name__ == "__main__":
    sim_command()
