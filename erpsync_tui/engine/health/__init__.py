"""Health checks and the troubleshooting walk (`erpsync-tui doctor`, the engine's health job, the console).

Every check is a small coroutine returning one `CheckResult`; `run_checks` runs them concurrently, pushes all
database work onto threads (the event loop may be the engine's or the console's), and stores the results in
`health_result`, one row per check and target, updated in place.

`triage` walks the steps an operator should check in order — can we reach the sites, do the credentials work,
is the sync running, is the data correct, is it keeping up — and stops at the first step with a failing check:
fixing a later step is pointless while an earlier one fails (no queue drains while the credentials are revoked).

Step assignment decisions:
- `sync.error_rate` is a *sync_running* check, not a performance one: a sync whose documents keep failing is
  not really running, and the step must surface before "is the data correct" (which it explains).
- `queue.stuck` (in_progress items nobody finishes) is *sync_running*: a hung worker stops progress.
- `database.disk_free` is *sync_running*: a full disk stops every write the engine makes.
- `queue.dead` and `conflicts.open` are *data_correct* warnings: documents that differ and need a person.
- `queue.backlog` is *performance*: work is flowing, just not fast enough.

The package (this module re-exports every name others import):
- `result.py`        CheckResult, the steps and which step each check is in;
- `site_checks.py`   network checks of a site (reachable, authenticated, doctypes, circuit, clock, receiver);
- `tls.py`           TLS verification and certificate expiry (a small DER reader);
- `store_checks.py`  the database, the engine, the queue, the receiver's reports, the last reconcile;
- `run.py`           planning, running and storing checks, and re-running the failing ones;
- `triage.py`        the walk over the results.
"""


from __future__ import annotations

from erpsync_tui.engine.health.result import (
    CHECK_STEPS,
    DB_TIMEOUT_SECONDS,
    LONG_TRANSACTION_MINUTES,
    LOOPBACK_NAMES,
    MAX_PROBE_SECONDS,
    PROBE_KEY,
    RECEIVER_TIMEOUT_SECONDS,
    STEP_QUESTIONS,
    TRIAGE_STEPS,
    CheckResult,
)
from erpsync_tui.engine.health.run import (
    RECHECK_SECONDS,
    _plan,
    failing_checks,
    recheck_failing,
    run_checks,
    store_results,
)
from erpsync_tui.engine.health.site_checks import (
    CLOCK_SKEW_MAX_SECONDS,
    check_authenticated,
    check_circuit,
    check_clock_skew,
    check_doctypes,
    check_reachable,
    check_receiver,
    unreachable_fix,
)
from erpsync_tui.engine.health.store_checks import (
    AUTH_REJECTIONS,
    RECONCILE_KEY,
    REJECTION_WINDOW_MINUTES,
    check_backlog,
    check_database_integrity,
    check_database_size,
    check_database_writable,
    check_dead,
    check_disk_free,
    check_engine_running,
    check_error_rate,
    check_failed,
    check_long_transactions,
    check_open_conflicts,
    check_receiver_rejected,
    check_receiver_secret,
    check_reconcile,
    check_stuck,
    reconcile_names,
    record_reconcile,
)
from erpsync_tui.engine.health.tls import (
    certificate_not_after,
    check_tls_expiry,
    check_tls_verify,
    days_left,
    fetch_certificate,
    parse_asn1_time,
    tls_days_result,
)
from erpsync_tui.engine.health.triage import (
    TriageVerdict,
    results_as_json,
    triage,
)

__all__ = [
    "AUTH_REJECTIONS",
    "CHECK_STEPS",
    "CLOCK_SKEW_MAX_SECONDS",
    "DB_TIMEOUT_SECONDS",
    "LONG_TRANSACTION_MINUTES",
    "LOOPBACK_NAMES",
    "MAX_PROBE_SECONDS",
    "PROBE_KEY",
    "RECEIVER_TIMEOUT_SECONDS",
    "RECHECK_SECONDS",
    "RECONCILE_KEY",
    "REJECTION_WINDOW_MINUTES",
    "STEP_QUESTIONS",
    "TRIAGE_STEPS",
    "CheckResult",
    "TriageVerdict",
    "_plan",
    "certificate_not_after",
    "check_authenticated",
    "check_backlog",
    "check_circuit",
    "check_clock_skew",
    "check_database_integrity",
    "check_database_size",
    "check_database_writable",
    "check_dead",
    "check_disk_free",
    "check_doctypes",
    "check_engine_running",
    "check_error_rate",
    "check_failed",
    "check_long_transactions",
    "check_open_conflicts",
    "check_reachable",
    "check_receiver",
    "check_receiver_rejected",
    "check_receiver_secret",
    "check_reconcile",
    "check_stuck",
    "check_tls_expiry",
    "check_tls_verify",
    "days_left",
    "failing_checks",
    "fetch_certificate",
    "parse_asn1_time",
    "recheck_failing",
    "reconcile_names",
    "record_reconcile",
    "results_as_json",
    "run_checks",
    "store_results",
    "tls_days_result",
    "triage",
    "unreachable_fix",
]
