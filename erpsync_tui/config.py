"""Configuration: locating, parsing and validating `config.yaml` into typed models.

Validation errors are reported one line per problem, naming the key path and the line in the file,
because the reader is an operator editing YAML over SSH, not a Python developer reading a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from erpsync_tui.config_checks import DEFAULT_DOCTYPES, cross_problems, match_rules

APP_NAME = "erpsync-tui"
CONFIG_ENV = "ERPSYNC_CONFIG"

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in config.yaml must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Strict):
    url: AnyHttpUrl
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout_seconds: PositiveFloat = 30.0
    max_concurrency: PositiveInt = 8
    requests_per_second: PositiveFloat = 20.0
    # Frappe timestamps are naive, in the site's own zone (System Settings); needed to compare them.
    timezone: str = "UTC"
    # Circuit breaker: open after this many consecutive failures; try one request again after the cool-down.
    circuit_failure_threshold: PositiveInt = 5
    circuit_reset_seconds: PositiveFloat = 30.0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")


class RetryConfig(_Strict):
    max_attempts: PositiveInt = 5
    backoff_base_seconds: PositiveFloat = 2.0
    backoff_max_seconds: PositiveFloat = 600.0


class DoctypeOverride(_Strict):
    conflict_resolution: str | None = None
    exclude_fields: list[str] | None = None
    field_level_merge: bool | None = None
    propagate_deletes: bool | None = None
    # Link fields whose values are document names, translated between sites: {"customer": "Customer",
    # "items.item_code": "Item"}. ERPNext's standard doctypes have built-in defaults (engine/links.py).
    links: dict[str, str] | None = None


class SyncConfig(_Strict):
    # Two sites are synced with each other; defaults to the first two under `sites`.
    between: tuple[str, str] | None = None
    doctypes: list[str] = Field(default_factory=lambda: list(DEFAULT_DOCTYPES), min_length=1)
    exclude_fields: list[str] = Field(default_factory=list)
    conflict_resolution: str = "latest_timestamp"
    field_level_merge: bool = True
    propagate_deletes: bool = True
    batch_size: PositiveInt = 100
    concurrency: PositiveInt = 8
    # 0: a full sync runs in the engine's process. N: its bulk batches run in N worker processes beside it, for
    # more documents per second than one process's one thread of Python gives (`erpsync-tui sync`; README).
    workers: Annotated[int, Field(ge=0, le=32)] = 0
    retry: RetryConfig = Field(default_factory=RetryConfig)
    overrides: dict[str, DoctypeOverride] = Field(default_factory=dict)
    # How documents that exist on both sites are recognised before anything is created: per doctype, a list of
    # key fields (`[customer_name]`) or of alternative lists tried in order (`[[tax_id], [customer_name]]`);
    # `[]` turns matching off. Doctypes not named here use the built-in defaults (engine/matching.py).
    match: dict[str, list[Any]] = Field(default_factory=dict)


class WebhookConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8787
    max_body_bytes: PositiveInt = 1_048_576
    # 0: the receiver runs in the engine's process. N: N receiver processes beside it (Linux), for more
    # webhooks per second than one process's one thread of Python can take (README: Benchmarks).
    workers: Annotated[int, Field(ge=0, le=32)] = 0


class SchedulerConfig(_Strict):
    queue_interval_seconds: PositiveFloat = 1.0
    incremental_sync_interval_seconds: PositiveFloat = 60.0
    health_interval_seconds: PositiveFloat = 30.0
    retention_interval_seconds: PositiveFloat = 3600.0
    # 0 turns periodic reconciliation off (it reads every document on both sites).
    reconcile_interval_seconds: Annotated[float, Field(ge=0)] = 0.0
    retention_days: PositiveInt = 14
    # How long the engine lease lasts without renewal: a crashed engine's successor waits at most this long.
    lease_ttl_seconds: Annotated[float, Field(ge=1, le=600)] = 15.0
    # An operator action no engine took within this long expires instead of running late (a pause sent
    # yesterday must not pause today's engine).
    action_max_age_seconds: PositiveFloat = 600.0


class AlertConfig(_Strict):
    error_rate_percent: Annotated[float, Field(ge=0, le=100)] = 10.0
    error_rate_window_minutes: PositiveInt = 15
    backlog_max: PositiveInt = 1000
    stuck_item_minutes: PositiveFloat = 10.0
    min_free_disk_mb: PositiveInt = 500
    tls_min_days_left: PositiveInt = 14


class DatabaseConfig(_Strict):
    # None → a SQLite file in the user data dir. Any SQLAlchemy URL (postgresql+psycopg://…) works.
    url: str | None = None


class ConsoleConfig(_Strict):
    theme: str = "erpsync-dark"
    refresh_seconds: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    # Binding id → keys, e.g. {"retry": "R", "pause": "f6"}; applied with App.set_keymap.
    keymap: dict[str, str] = Field(default_factory=dict)
    mouse: bool = False


class AppConfig(_Strict):
    sites: dict[str, SiteConfig] = Field(min_length=2)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)

    @field_validator("sites")
    @classmethod
    def _site_names(cls, sites: dict[str, SiteConfig]) -> dict[str, SiteConfig]:
        for name in sites:
            if not name.replace("_", "").isalnum() or not name[0].isalpha():
                raise ValueError(f"site name {name!r} must be letters, digits and _ (it names env variables)")
        return sites

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        problems = cross_problems(self.model_dump(mode="python"))
        if problems:
            # One "key.path: message" per line; _problems_from splits them back into separate problems.
            raise ValueError("\n".join(problems))
        return self

    @property
    def pair(self) -> tuple[str, str]:
        names = list(self.sites)
        return self.sync.between or (names[0], names[1])

    def policy_for(self, doctype: str) -> DoctypePolicy:
        """The effective sync rules for one doctype: global rules with its override applied."""
        override = self.sync.overrides.get(doctype, DoctypeOverride())
        return DoctypePolicy(
            doctype=doctype,
            conflict_resolution=override.conflict_resolution or self.sync.conflict_resolution,
            exclude_fields=frozenset(self.sync.exclude_fields) | frozenset(override.exclude_fields or ())
            | SERVER_COMPUTED_FIELDS.get(doctype, frozenset()),
            field_level_merge=_first(override.field_level_merge, self.sync.field_level_merge),
            propagate_deletes=_first(override.propagate_deletes, self.sync.propagate_deletes),
            links=dict(override.links) if override.links is not None else None,
            match=match_rules(self.sync.match[doctype]) if doctype in self.sync.match else None,
        )


# Fields ERPNext computes on the server from docstatus and linked documents (a client never sets them, §5b):
# never compared, never written, for every doctype that has them — whatever the configuration says.
_TRANSACTION_STATUS = frozenset({"status", "per_billed", "per_delivered", "per_received", "billing_status",
                                 "delivery_status", "advance_paid"})
# ...and the totals ERPNext recomputes from the rows on every save (a row's amount, the order's totals). Left
# in, an edit to one row on each site would move the totals on both: a conflict where the rows merge cleanly.
# Dropped at the top level and in every child row, like any excluded field. Matching rules that name one
# (Sales Order's grand_total) read the raw document, not the normal form (engine/matching.py).
_TRANSACTION_TOTALS = frozenset({
    "amount", "base_amount", "net_amount", "base_net_amount",  # child rows
    "total_qty", "total", "base_total", "net_total", "base_net_total", "grand_total", "base_grand_total",
    "rounded_total", "base_rounded_total", "rounding_adjustment", "base_rounding_adjustment",
    "total_taxes_and_charges", "base_total_taxes_and_charges", "in_words", "base_in_words",
})
SERVER_COMPUTED_FIELDS: dict[str, frozenset[str]] = {
    doctype: _TRANSACTION_STATUS | _TRANSACTION_TOTALS for doctype in (
        "Sales Order", "Purchase Order", "Sales Invoice", "Purchase Invoice", "Delivery Note", "Purchase Receipt",
        "Quotation",
    )
}


def _first(value: bool | None, default: bool) -> bool:
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class DoctypePolicy:
    doctype: str
    conflict_resolution: str
    exclude_fields: frozenset[str]
    field_level_merge: bool
    propagate_deletes: bool
    links: dict[str, str] | None = None  # None: the built-in defaults for the doctype
    match: tuple[tuple[str, ...], ...] | None = None  # None: the built-in matching rules (engine/matching.py)


# --------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "line ?"
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """config.yaml is unreadable or invalid; carries one problem per offending key."""

    def __init__(self, file: Path | None, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        head = f"invalid configuration in {self.file}" if self.file else "invalid configuration"
        return "\n".join([head + ":", *(f"  {p}" for p in self.problems)])


# --------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True, slots=True)
class Paths:
    config_file: Path | None
    config_dir: Path
    data_dir: Path
    log_dir: Path
    themes_dirs: tuple[Path, ...]
    database_url: str

    @property
    def database_file(self) -> Path | None:
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            return Path(self.database_url[len(prefix) :])
        return None


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def user_log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME))


def bundled_themes_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "themes"


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Search order: --config, $ERPSYNC_CONFIG, ./config.yaml, the user config dir."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for candidate in (Path.cwd() / "config.yaml", user_config_dir() / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def default_database_url() -> str:
    return f"sqlite:///{user_data_dir() / 'state.db'}"


def database_url_from(value: str) -> str:
    """`--db` accepts a SQLAlchemy URL or a plain path to a SQLite file."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def resolve_paths(config_file: Path | None, config: AppConfig | None, db_override: str | None = None) -> Paths:
    if db_override:
        db_url = database_url_from(db_override)
    elif config is not None and config.database.url:
        db_url = database_url_from(config.database.url)
    else:
        db_url = default_database_url()
    return Paths(
        config_file=config_file.resolve() if config_file else None,
        config_dir=user_config_dir(),
        data_dir=user_data_dir(),
        log_dir=user_log_dir(),
        themes_dirs=(user_config_dir() / "themes", bundled_themes_dir()),
        database_url=db_url,
    )


# --------------------------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, [ConfigProblem("", None, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, [ConfigProblem("", None, f"cannot read: {exc}")]) from None
    return parse_config(text, file)


def parse_config(text: str, file: Path | None = None) -> AppConfig:
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = (exc.problem or exc.context or "YAML syntax error").strip()
        raise ConfigError(file, [ConfigProblem("", line, f"YAML syntax error: {problem}")]) from None
    except Exception as exc:  # ruamel raises a few non-marked errors (duplicate keys, bad tags)
        raise ConfigError(file, [ConfigProblem("", None, f"YAML error: {exc}")]) from None
    if tree is None:
        raise ConfigError(file, [ConfigProblem("", 1, "the file is empty; `erpsync-tui init` writes a starter")])
    if not isinstance(tree, dict):
        raise ConfigError(file, [ConfigProblem("", 1, "the top level must be a mapping of sections")])
    data = _plain(tree)
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = [p for err in exc.errors() for p in _problems_from(err, tree)]
        if not any(not err["loc"] for err in exc.errors()):  # the cross checks did not run: run them on the raw data
            problems += [_problem_at(line.split(": ", 1), tree) for line in _safe_cross_problems(data)]
        raise ConfigError(file, _in_line_order(problems)) from None


def config_error_at(file: Path | None, problems: list[tuple[str, str]]) -> ConfigError:
    """A ConfigError for a check made above this layer (the console's keymap against its binding ids), each
    key path with its line in the file, like every other configuration error."""
    tree: Any = None
    if file is not None:
        try:
            tree = YAML(typ="rt").load(file.read_text(encoding="utf-8"))
        except Exception:  # the file parsed a moment ago; if it cannot be read again, the lines are unknown
            tree = None
    found = [ConfigProblem(path, _line_of(tree, path.split(".")) if tree is not None else None, message)
             for path, message in problems]
    return ConfigError(file, _in_line_order(found))


def _safe_cross_problems(data: dict[str, Any]) -> list[str]:
    try:
        return cross_problems(data)
    except (TypeError, AttributeError, ValueError):  # data too broken for them; its field errors say why
        return []


def _in_line_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers → plain dicts/lists, so pydantic sees ordinary data."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _problems_from(err: Any, tree: CommentedMap) -> list[ConfigProblem]:
    loc = list(err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if not loc and ": " in message:
        # Cross-field checks name their own key paths, one "a.b.c: message" per line.
        return [_problem_at(line.split(": ", 1), tree) for line in message.splitlines()]
    if err["type"] == "extra_forbidden":
        message = "unknown key (check its spelling; unknown keys are not ignored)"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
        message = f"{message} (got {err['input']!r})"
    return [ConfigProblem(".".join(str(p) for p in loc), _line_of(tree, loc), message)]


def _problem_at(path_and_message: list[str], tree: CommentedMap) -> ConfigProblem:
    path, message = path_and_message
    return ConfigProblem(path, _line_of(tree, path.split(".")), message)


def _line_of(tree: Any, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest key in `loc` that exists in the YAML tree."""
    node, line = tree, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    if line is None and isinstance(tree, CommentedMap):
        line = 1
    return line


def load_effective_config(explicit: str | None = None) -> tuple[Path | None, AppConfig]:
    file = find_config_file(explicit)
    if file is None:
        raise ConfigError(
            None,
            [
                ConfigProblem(
                    "",
                    None,
                    f"no config.yaml found (looked at --config, ${CONFIG_ENV}, ./config.yaml, "
                    f"{user_config_dir() / 'config.yaml'}); run `erpsync-tui init`",
                )
            ],
        )
    return file, load_config(file)

