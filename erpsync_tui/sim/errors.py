"""Frappe exception classes and their v1 HTTP error bodies."""

from __future__ import annotations

import json
from typing import Any


class FrappeError(Exception):
    """A handled Frappe exception: `exc_type` and status mirror `frappe/exceptions.py`."""

    http_status = 417
    exc_type = "ValidationError"
    title = "Message"

    def __init__(self, message: str, *, error_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_message = error_message

    def body(self, *, tracebacks: bool = False) -> dict[str, Any]:
        """The JSON body Frappe's `report_error` produces for this exception."""
        server_message = json.dumps(
            {"message": self.message, "title": self.title, "indicator": "red", "raise_exception": 1}
        )
        body: dict[str, Any] = {
            "exc_type": self.exc_type,
            # A JSON string holding a list of JSON strings, exactly as Frappe ships it.
            "_server_messages": json.dumps([server_message]),
        }
        if self.error_message is not None:
            body["_error_message"] = self.error_message
        if tracebacks:  # only sites that allow tracebacks send these (System Settings)
            body["exception"] = f"frappe.exceptions.{self.exc_type}: {self.message}"
            trace = f"Traceback (most recent call last):\n  (simulated)\n{body['exception']}"
            body["exc"] = json.dumps([trace])
        return body


class AuthenticationError(FrappeError):
    http_status = 401
    exc_type = "AuthenticationError"


class InvalidAuthorizationToken(FrappeError):
    # a CSRFTokenError subclass in Frappe, hence 400
    http_status = 400
    exc_type = "InvalidAuthorizationToken"


class PermissionError(FrappeError):
    http_status = 403
    exc_type = "PermissionError"


class DoesNotExistError(FrappeError):
    http_status = 404
    exc_type = "DoesNotExistError"


class DuplicateEntryError(FrappeError):
    http_status = 409
    exc_type = "DuplicateEntryError"


class ValidationError(FrappeError):
    http_status = 417
    exc_type = "ValidationError"


class MandatoryError(ValidationError):
    exc_type = "MandatoryError"


class LinkValidationError(ValidationError):
    exc_type = "LinkValidationError"


class LinkExistsError(ValidationError):
    exc_type = "LinkExistsError"


class TimestampMismatchError(ValidationError):
    exc_type = "TimestampMismatchError"


class DataError(ValidationError):
    exc_type = "DataError"


class UpdateAfterSubmitError(ValidationError):
    exc_type = "UpdateAfterSubmitError"


class DocstatusTransitionError(ValidationError):
    exc_type = "DocstatusTransitionError"


class OperationalError(FrappeError):
    """Stands for any unhandled server failure (DB trouble); Frappe answers 500 with the class name."""

    http_status = 500
    exc_type = "OperationalError"


class NameError(FrappeError):  # shadows the builtin on purpose: the Frappe name (frappe.NameError, 409)
    http_status = 409
    exc_type = "NameError"
