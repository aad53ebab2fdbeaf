"""API keys, Frappe's token/Basic authentication and the simulator's simple per-key permissions."""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass, field

from . import errors

GUEST = "Guest"


@dataclass
class ApiKey:
    key: str
    secret: str
    user: str
    denied_doctypes: set[str] = field(default_factory=set)  # neither read nor write
    read_only_doctypes: set[str] = field(default_factory=set)  # read, but no insert/update/delete


@dataclass(frozen=True)
class Identity:
    user: str
    key: ApiKey | None  # None for Guest
    rate_key: str  # what the per-key rate limiter counts


class KeyRing:
    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._cache: dict[str, Identity] = {}  # Authorization header → identity; cleared on any key change
        self._lock = threading.Lock()

    def add(self, api_key: ApiKey) -> None:
        with self._lock:
            self._keys[api_key.key] = api_key
            self._cache.clear()

    def get(self, key: str) -> ApiKey | None:
        return self._keys.get(key)

    def set_permissions(
        self, key: str, denied_doctypes: list[str] | None = None, read_only_doctypes: list[str] | None = None
    ) -> None:
        with self._lock:
            entry = self._keys[key]
            if denied_doctypes is not None:
                entry.denied_doctypes = set(denied_doctypes)
            if read_only_doctypes is not None:
                entry.read_only_doctypes = set(read_only_doctypes)

    def identify(self, header: str | None, client_host: str) -> Identity:
        """Resolve the Authorization header as Frappe's validate_auth does; raises 401/400 FrappeErrors."""
        if not header:
            return Identity(GUEST, None, f"ip:{client_host}")
        cached = self._cache.get(header)
        if cached is not None:
            return cached
        scheme, _, token = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                token = base64.b64decode(token.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise errors.InvalidAuthorizationToken("Invalid authorization token") from None
            if ":" not in token:
                raise errors.InvalidAuthorizationToken("Invalid authorization token")
        elif scheme == "bearer":
            raise errors.AuthenticationError("Invalid OAuth bearer token")  # no OAuth on the simulator
        elif scheme != "token":
            return Identity(GUEST, None, f"ip:{client_host}")  # Frappe ignores other schemes: the user stays Guest
        key, _, secret = token.strip().partition(":")
        entry = self._keys.get(key)
        if entry is None or entry.secret != secret:
            raise errors.AuthenticationError("Invalid API key or secret")
        identity = Identity(entry.user, entry, f"key:{key}")
        with self._lock:
            self._cache[header] = identity
        return identity


def check_permission(identity: Identity, doctype: str, *, write: bool) -> None:
    """403 PermissionError with `_error_message`, as Frappe answers a role that may not touch a doctype."""
    entry = identity.key
    denied = entry is None or doctype in entry.denied_doctypes or (write and doctype in entry.read_only_doctypes)
    if denied:
        message = f"Insufficient Permission for {doctype}"
        raise errors.PermissionError(message, error_message=message)
