"""The one error taxonomy (ERP001–ERP010) that the engine, the CLI and the console all read.

Every failure the product reports carries one of these codes, so an operator at 3 a.m. sees the same
code and the same one-line quick fix wherever the failure surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    CONNECTION = "ERP001"
    AUTHENTICATION = "ERP002"
    FIELD_MAPPING = "ERP003"
    TRANSFORMATION = "ERP004"
    RATE_LIMIT = "ERP005"
    WEBHOOK = "ERP006"
    TIMEOUT = "ERP007"
    VALIDATION = "ERP008"
    RECONCILIATION = "ERP009"
    QUEUE = "ERP010"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: ErrorCode
    title: str
    quick_fix: str


ERROR_TABLE: dict[ErrorCode, ErrorInfo] = {
    info.code: info
    for info in (
        ErrorInfo(
            ErrorCode.CONNECTION,
            "Cannot reach the site",
            "Check sites.<site>.url, DNS and the firewall from this host (`erpsync-tui test` names the site and "
            "its URL); an HTTP 5xx means the site is up but failing: read its error log.",
        ),
        ErrorInfo(
            ErrorCode.AUTHENTICATION,
            "Authentication failed",
            "401: the key or secret is wrong or revoked — generate new keys for the sync user and run "
            "`erpsync-tui secrets set <site>`. 403: the key works but the user's role lacks a permission on the "
            "doctype — grant it (Role Permission Manager). Then `erpsync-tui retry --code ERP002`.",
        ),
        ErrorInfo(
            ErrorCode.FIELD_MAPPING,
            "A field or a linked document is missing on the target",
            "A missing field: add it on the target or list it under sync.exclude_fields. A missing linked "
            "document: sync its doctype first (it must be in sync.doctypes, before this one). Then "
            "`erpsync-tui retry --code ERP003`.",
        ),
        ErrorInfo(
            ErrorCode.TRANSFORMATION,
            "A document could not be transformed",
            "Inspect the document's values; fix the source data or the doctype override in config.yaml.",
        ),
        ErrorInfo(
            ErrorCode.RATE_LIMIT,
            "The site is rate limiting us",
            "Lower sites.<site>.requests_per_second or raise the site's rate_limit in site_config.json.",
        ),
        ErrorInfo(
            ErrorCode.WEBHOOK,
            "Webhook rejected or malformed",
            "Make each site's Webhook secret match `erpsync-tui secrets get webhook --show` (serve needs one: "
            "`erpsync-tui secrets set webhook` or ERPSYNC_WEBHOOK_SECRET) and check its JSON body.",
        ),
        ErrorInfo(
            ErrorCode.TIMEOUT,
            "The site did not answer in time",
            "Check the site's load and workers; raise sites.<site>.timeout_seconds if it is just slow.",
        ),
        ErrorInfo(
            ErrorCode.VALIDATION,
            "The site rejected the document",
            "Read the site's message (mandatory field, missing link, submitted doc) and fix the data.",
        ),
        ErrorInfo(
            ErrorCode.RECONCILIATION,
            "The sites disagree",
            "Run `erpsync-tui reconcile` to see each difference with its values, then `erpsync-tui reconcile "
            "--apply`; open conflicts: `erpsync-tui conflicts` / `erpsync-tui resolve`; documents matching "
            "several on the other site (ambiguous, never created): `erpsync-tui match` names them — merge or "
            "rename the duplicates on the site, then `erpsync-tui sync`.",
        ),
        ErrorInfo(
            ErrorCode.QUEUE,
            "The work queue is unhealthy",
            "`erpsync-tui queue` lists failed and dead items with their errors; fix the cause, then "
            "`erpsync-tui retry --failed` (or `--dead`, `--code ERPnnn`).",
        ),
    )
}


def quick_fix(code: ErrorCode | str | None) -> str:
    """The one-line fix for a code, or an empty string for no/unknown code."""
    if not code:
        return ""
    try:
        return ERROR_TABLE[ErrorCode(code)].quick_fix
    except ValueError:
        return ""


def error_title(code: ErrorCode | str | None) -> str:
    if not code:
        return ""
    try:
        return ERROR_TABLE[ErrorCode(code)].title
    except ValueError:
        return ""


class ErpSyncError(Exception):
    """Base of every error the product raises on purpose; carries its taxonomy code."""

    code: ErrorCode = ErrorCode.QUEUE

    def __init__(self, message: str, *, code: ErrorCode | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self._fix = fix

    @property
    def quick_fix(self) -> str:
        """The sharper fix this failure knows (a missing link names its doctype), else its code's."""
        return getattr(self, "_fix", None) or quick_fix(self.code)
