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
            "Check the site URL, DNS and firewall; `curl -I <url>/api/method/ping` from this host.",
        ),
        ErrorInfo(
            ErrorCode.AUTHENTICATION,
            "Authentication failed",
            "Regenerate the API key/secret for the sync user and run `erpsync-tui secrets set <site>`.",
        ),
        ErrorInfo(
            ErrorCode.FIELD_MAPPING,
            "A field does not exist on the target",
            "Add the field on the target site or list it under sync.exclude_fields in config.yaml.",
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
            "Check the Webhook doctype's secret matches `erpsync-tui secrets get webhook` and its JSON body.",
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
            "Run `erpsync-tui reconcile --doctype <D>` and resolve the listed differences.",
        ),
        ErrorInfo(
            ErrorCode.QUEUE,
            "The work queue is unhealthy",
            "Look at failed/dead items in the console's Queue screen; retry after fixing their cause.",
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

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def quick_fix(self) -> str:
        return quick_fix(self.code)
