"""The connector contract and its error hierarchy.

`Connector` is what the engine talks to. It is a Protocol rather than a base class so that connectors for
other ERPs (SAP OData with CSRF tokens, session-cookie ERPs) can follow it without inheriting Frappe details.

Every failure a connector raises is a `ConnectorError`, an `ErpSyncError` carrying one ERP001–ERP010 code and a
`retryable` verdict, so the engine can decide "retry later" vs "park and show the operator" from the type alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from erpsync_tui.errors import ErpSyncError, ErrorCode

# A filter in Frappe's list-of-lists form (["field", "op", value] or ["Doctype", "field", "op", value]) or its
# dict form ({"field": value} / {"field": [op, value]}).
Filters = Sequence[Sequence[Any]] | Mapping[str, Any]

DEFAULT_ORDER = "modified asc, name asc"


@runtime_checkable
class Connector(Protocol):
    """One ERP site, spoken to over its API. All methods are coroutines and raise `ConnectorError`."""

    site: str

    @property
    def circuit_state(self) -> str:
        """ "closed" | "open" | "half_open"."""
        ...

    async def whoami(self) -> str:
        """The user the credentials authenticate as; the cheap connect-and-authenticate probe."""
        ...

    def list_documents(
        self,
        doctype: str,
        *,
        fields: Sequence[str] = ("name", "modified"),
        filters: Filters | None = None,
        modified_since: str | None = None,
        order_by: str = DEFAULT_ORDER,
        page_size: int = 500,
        limit: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def get(self, doctype: str, name: str) -> dict[str, Any] | None:
        """The full document (with child tables), or None when it does not exist."""
        ...

    async def insert(self, doctype: str, doc: Mapping[str, Any]) -> dict[str, Any]: ...

    async def update(
        self, doctype: str, name: str, changes: Mapping[str, Any], *, modified: str | None = None
    ) -> dict[str, Any]:
        """Apply `changes`; when `modified` is given the site rejects the write if the document changed since."""
        ...

    async def delete(self, doctype: str, name: str) -> bool:
        """True if deleted, False if it was already gone."""
        ...

    async def count(self, doctype: str, filters: Filters | None = None) -> int: ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------------------------- errors


class ConnectorError(ErpSyncError):
    """A request to a site failed. `retryable` says whether trying again later can help."""

    code: ErrorCode = ErrorCode.CONNECTION
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        site: str,
        status: int | None = None,
        exc_type: str | None = None,
        code: ErrorCode | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.site = site
        self.status = status
        self.exc_type = exc_type
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        super().__init__(message, code=code)
        # Prefix with code and site so every log line and console cell reads the same: "[ERP001] cloud: ...".
        self.args = (f"[{self.code}] {site}: {message}",)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(site={self.site!r}, code={self.code!s}, status={self.status}, {self.message!r})"


class ConnectionFailed(ConnectorError):
    code = ErrorCode.CONNECTION
    default_retryable = True


class ServerError(ConnectorError):
    """5xx: the site (or the proxy in front of it) failed. 500/502/503/504 are worth retrying."""

    code = ErrorCode.CONNECTION
    default_retryable = True

    @property
    def quick_fix(self) -> str:
        # It answered: DNS and the network are fine; the site itself fails.
        return (f"{self.site} answered HTTP {self.status}: it is reachable but failing — read its Error Log "
                "(/app/error-log) and its web server's log; the queue retries meanwhile.")


class CircuitOpen(ConnectorError):
    """Refused without sending: the site failed repeatedly and is being left alone until `retry_at`."""

    code = ErrorCode.CONNECTION
    default_retryable = True

    def __init__(self, message: str, *, site: str, retry_at: float | None = None) -> None:
        self.retry_at = retry_at  # on the breaker's clock (time.monotonic by default)
        super().__init__(message, site=site)


class AuthenticationFailed(ConnectorError):
    code = ErrorCode.AUTHENTICATION


class PermissionDenied(ConnectorError):
    """403: authenticated, but the user's roles may not do this to this doctype (the key itself works)."""

    code = ErrorCode.AUTHENTICATION

    def __init__(self, message: str, *, permission: str | None = None, doctype: str | None = None,
                 **kwargs: Any) -> None:
        self.permission = permission
        self.doctype = doctype
        super().__init__(message, **kwargs)

    @property
    def quick_fix(self) -> str:
        return permission_fix(self.site, self.doctype, self.permission)


def permission_fix(site: str, doctype: str | None, permission: str | None) -> str:
    """A 403 means a role is missing, not that the key is wrong: say which permission on which doctype."""
    what = f"the '{permission}' permission" if permission else "permission"
    on = f" on {doctype}" if doctype else ""
    return (f"Give the sync user's role {what}{on} on {site} (Role Permission Manager), then "
            "`erpsync-tui retry --code ERP002`; the API key itself works.")


class RateLimited(ConnectorError):
    code = ErrorCode.RATE_LIMIT
    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class RequestTimeout(ConnectorError):
    code = ErrorCode.TIMEOUT
    default_retryable = True


class NotFound(ConnectorError):
    """404: no such document, doctype or route. Not retryable: it will not appear by waiting."""

    code = ErrorCode.VALIDATION


class ValidationFailed(ConnectorError):
    """417 (and other 4xx): the site rejected the document. `messages` holds the site's own words."""

    code = ErrorCode.VALIDATION

    def __init__(self, message: str, *, messages: Sequence[str] = (), **kwargs: Any) -> None:
        self.messages = tuple(messages)
        super().__init__(message, **kwargs)


class LinkValidationFailed(ValidationFailed):
    """A Link field names a document missing on this site ("Could not find {Doctype}: {value}")."""

    def __init__(
        self, message: str, *, link_doctype: str | None = None, link_name: str | None = None, **kwargs: Any
    ) -> None:
        self.link_doctype = link_doctype
        self.link_name = link_name
        super().__init__(message, **kwargs)


class TimestampMismatch(ValidationFailed):
    """The document changed on the site after the `modified` we sent: a concurrent edit, i.e. a conflict."""


class DuplicateEntry(ValidationFailed):
    """409 (or a unique constraint): a document with this name/value already exists."""


class FieldMappingError(ValidationFailed):
    """The site does not know a field we used (DataError / unknown column): a mapping problem, ERP003."""

    code = ErrorCode.FIELD_MAPPING

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        self.field = field
        super().__init__(message, **kwargs)
