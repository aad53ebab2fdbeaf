"""Connectors: how the engine reads and writes an ERP site. `Connector` is the contract; Frappe is the first."""

from erpsync_tui.connectors.base import (
    DEFAULT_ORDER,
    AuthenticationFailed,
    CircuitOpen,
    ConnectionFailed,
    Connector,
    ConnectorError,
    DuplicateEntry,
    FieldMappingError,
    Filters,
    LinkValidationFailed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServerError,
    TimestampMismatch,
    ValidationFailed,
)
from erpsync_tui.connectors.circuit import CircuitBreaker, CircuitSnapshot
from erpsync_tui.connectors.frappe import FrappeConnector, connect, site_connectors
from erpsync_tui.connectors.frappe_http import ConnectorStats
from erpsync_tui.connectors.frappe_wire import format_timestamp, parse_timestamp

__all__ = [
    "DEFAULT_ORDER",
    "AuthenticationFailed",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitSnapshot",
    "ConnectionFailed",
    "Connector",
    "ConnectorError",
    "ConnectorStats",
    "DuplicateEntry",
    "FieldMappingError",
    "Filters",
    "FrappeConnector",
    "LinkValidationFailed",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "ServerError",
    "TimestampMismatch",
    "ValidationFailed",
    "connect",
    "format_timestamp",
    "parse_timestamp",
    "site_connectors",
]
