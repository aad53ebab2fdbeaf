"""`erpsync-tui init`, `config …` and `secrets …`: setting up (registered in cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from erpsync_tui import secrets as secret_store
from erpsync_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    check_keymap,
    cli,
    emit_json,
    fail_config,
    pass_ctx,
)
from erpsync_tui.config import (
    AppConfig,
    ConfigError,
    find_config_file,
    load_effective_config,
    resolve_paths,
    user_config_dir,
)

# =============================================================================================== config


@cli.command("init")
@click.option("--path", type=click.Path(path_type=Path), help="Where to write (default: user config dir).")
def init_command(path: Path | None) -> None:
    """Write a starter config.yaml into the user config dir (never overwrites)."""
    target = path or user_config_dir() / "config.yaml"
    if target.exists():
        click.echo(f"error: {target} exists; not overwriting it (edit it, or pass --path)", err=True)
        sys.exit(EXIT_FAILED)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_starter_config(), encoding="utf-8")
    click.echo(f"wrote {target}\nnext: edit the site URLs, then `erpsync-tui secrets set <site>` for each site")


def _starter_config() -> str:
    # data/config.example.yaml is a symlink to the repository's config.yaml; wheels carry its content.
    from importlib.resources import files

    return files("erpsync_tui").joinpath("data/config.example.yaml").read_text(encoding="utf-8")


@cli.group("config")
def config_group() -> None:
    """Check the configuration and show the paths in use."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_check(ctx: Context, as_json: bool) -> None:
    """Validate config.yaml and print the effective configuration (secrets masked)."""
    config = ctx.config()
    check_keymap(ctx, config)
    effective = config.model_dump(mode="json")
    effective["secrets"] = _secret_summary(list(config.sites))
    if as_json:
        emit_json({"config_file": str(ctx.config_file()), "valid": True, "effective": effective})
        return
    from ruamel.yaml import YAML

    ctx.out.print(f"[green]ok[/]: {escape(str(ctx.config_file()))} is valid\n")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(effective, sys.stdout)
    _warn_tls(ctx, config)


def _warn_tls(ctx: Context, config: AppConfig) -> None:
    for name, site in config.sites.items():
        if not site.verify_tls:
            ctx.err.print(
                f"[bold yellow]WARNING:[/] TLS verification is OFF for site {escape(name)}: "
                "anyone on the path can read and change synced data"
            )


def _secret_summary(sites: list[str]) -> dict[str, dict[str, str]]:
    summary: dict[str, dict[str, str]] = {}
    for site in sites:
        for ref in secret_store.site_refs(site):
            found = secret_store.lookup(ref)
            summary.setdefault(site, {})[ref.field] = f"{found.masked()} ({found.source})"
    webhook = secret_store.lookup(secret_store.WEBHOOK_REF)
    summary["webhook"] = {"secret": f"{webhook.masked()} ({webhook.source})"}
    return summary


@config_group.command("paths")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_paths(ctx: Context, as_json: bool) -> None:
    """Print every path in use: config, database, themes, logs."""
    file = find_config_file(ctx.config_option)
    config: AppConfig | None = None
    if file is not None and file.is_file():
        try:
            file, config = load_effective_config(str(file))
        except ConfigError as exc:
            fail_config(exc)
    paths = resolve_paths(file, config, ctx.db_option)
    rows = {
        "config_file": str(paths.config_file) if paths.config_file else "(none found)",
        "config_dir": str(paths.config_dir),
        "database": paths.database_url,
        "data_dir": str(paths.data_dir),
        "log_dir": str(paths.log_dir),
        "themes": [str(p) for p in paths.themes_dirs],
        "keyring": secret_store.keyring_name() if secret_store.keyring_available() else "none (using environment)",
    }
    if as_json:
        emit_json(rows)
        return
    for key, value in rows.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        ctx.out.print(f"{key:<12} {escape(shown)}")


# =============================================================================================== secrets


@cli.group("secrets")
def secrets_group() -> None:
    """Manage site API credentials and the webhook secret (OS keyring)."""


def _refs_for(target: str) -> tuple[secret_store.SecretRef, ...]:
    if target == secret_store.WEBHOOK:
        return (secret_store.WEBHOOK_REF,)
    return secret_store.site_refs(target)


@secrets_group.command("set")
@click.argument("target", metavar="SITE|webhook")
@pass_ctx
def secrets_set(ctx: Context, target: str) -> None:
    """Store a site's API key and secret, or the webhook secret; input is prompted, never echoed."""
    _check_target(ctx, target)
    if not secret_store.keyring_available():  # before asking anything: the answer could not be stored
        refs = _refs_for(target)
        click.echo(f"error: no working OS keyring here ({secret_store.keyring_name()}); export "
                   f"{', '.join(r.env_var for r in refs)} instead (e.g. from a systemd EnvironmentFile readable "
                   "only by the service user)", err=True)
        sys.exit(EXIT_FAILED)
    for ref in _refs_for(target):
        value = click.prompt(f"{ref.label}", hide_input=True, confirmation_prompt=ref.field != "api_key")
        try:
            secret_store.store(ref, value)
        except RuntimeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        click.echo(f"stored {ref.label} in the keyring ({secret_store.keyring_name()})")


def _check_target(ctx: Context, target: str) -> None:
    if target != secret_store.WEBHOOK and target not in ctx.config().sites:
        known = ", ".join([*ctx.config().sites, secret_store.WEBHOOK])
        click.echo(f"error: unknown site {target!r}; known: {known}", err=True)
        sys.exit(EXIT_USAGE)


@secrets_group.command("get")
@click.argument("target", metavar="SITE|webhook")
@click.option("--show", is_flag=True, help="Print the value itself instead of a masked form.")
@pass_ctx
def secrets_get(ctx: Context, target: str, show: bool) -> None:
    """Show where a secret comes from, masked unless --show."""
    _check_target(ctx, target)
    missing = False
    for ref in _refs_for(target):
        found = secret_store.lookup(ref)
        missing |= found.value is None
        shown = found.value if (show and found.value) else found.masked()
        # --show is the one deliberate exception to redaction: the operator asked for the value.
        click.echo(f"{ref.label}: {shown} (source: {found.source})")
    sys.exit(EXIT_FAILED if missing else EXIT_OK)


@secrets_group.command("delete")
@click.argument("target", metavar="SITE|webhook")
@pass_ctx
def secrets_delete(ctx: Context, target: str) -> None:
    """Remove a site's credentials or the webhook secret from the keyring."""
    _check_target(ctx, target)
    for ref in _refs_for(target):
        removed = secret_store.delete(ref)
        click.echo(f"{ref.label}: {'deleted' if removed else 'not in the keyring'}")


@secrets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def secrets_list(ctx: Context, as_json: bool) -> None:
    """List every secret the configuration needs, where it comes from, masked."""
    summary = _secret_summary(list(ctx.config().sites))
    if as_json:
        emit_json(summary)
        return
    backend = secret_store.keyring_name() if secret_store.keyring_available() else "none"
    ctx.out.print(f"keyring backend: {escape(backend)}")
    for owner, fields in summary.items():
        for name, shown in fields.items():
            ctx.out.print(f"  {escape(owner)}.{name}: {escape(shown)}")
