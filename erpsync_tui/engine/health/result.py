"""Health results: the triage steps, which step each check is in, and `CheckResult`."""

from __future__ import annotations

from dataclasses import dataclass

from erpsync_tui.errors import ErrorCode, quick_fix

TRIAGE_STEPS = ("connection", "authentication", "sync_running", "data_correct", "performance")
STEP_QUESTIONS = {
    "connection": "Can we reach the sites?",
    "authentication": "Do the credentials work?",
    "sync_running": "Is the sync running?",
    "data_correct": "Is the data correct?",
    "performance": "Is it keeping up?",
}

# Every check id and the triage step it belongs to; the one place that says which step a check is in.
CHECK_STEPS: dict[str, str] = {
    "site.reachable": "connection",
    "site.tls_expiry": "connection",
    "site.tls_verify": "connection",
    "site.circuit": "connection",
    "site.authenticated": "authentication",
    "site.doctypes": "authentication",
    "database.writable": "sync_running",
    "database.integrity": "sync_running",
    "database.disk_free": "sync_running",  # SQLite
    "database.size": "performance",  # PostgreSQL
    "database.transactions": "sync_running",  # PostgreSQL
    "engine.running": "sync_running",
    "receiver.listening": "sync_running",
    "receiver.secret": "sync_running",
    "receiver.rejected": "sync_running",
    "queue.stuck": "sync_running",
    "sync.error_rate": "sync_running",
    "queue.dead": "data_correct",
    "queue.failed": "data_correct",
    "conflicts.open": "data_correct",
    "sync.reconcile": "data_correct",
    "sites.clock": "data_correct",
    "queue.backlog": "performance",
}

MAX_PROBE_SECONDS = 5.0  # a health probe never waits longer than this, whatever the site's own timeout
DB_TIMEOUT_SECONDS = 15.0  # longer than SQLite's busy timeout (10 s), so a lock wait reports its own error
RECEIVER_TIMEOUT_SECONDS = 2.0
LONG_TRANSACTION_MINUTES = 5.0  # PostgreSQL: a transaction open longer than this is reported (the engine's last ms)
PROBE_KEY = "health_probe_at"  # the meta row the write probe updates
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str  # stable id, e.g. "site.reachable"
    target: str  # what was checked: a site name, "database", "queue", …
    status: str  # ok | warn | fail
    value: str = ""  # the measurement, for humans: "42 ms", "87 days", "12 items"
    detail: str = ""
    error_code: str | None = None
    quick_fix: str = ""
    step: str = "sync_running"  # one of TRIAGE_STEPS

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _result(
    check: str,
    target: str,
    status: str,
    value: str,
    detail: str = "",
    code: ErrorCode | None = None,
    fix: str | None = None,
) -> CheckResult:
    """A result with its step looked up; a non-ok result gets the code's quick fix unless a sharper one is given."""
    if status == "ok":
        code, fix = None, ""
    return CheckResult(
        check=check,
        target=target,
        status=status,
        value=value,
        detail=detail,
        error_code=str(code) if code else None,
        quick_fix=fix if fix is not None else quick_fix(code),
        step=CHECK_STEPS[check],
    )


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"
