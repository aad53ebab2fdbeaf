"""Secrets: site API credentials and the webhook secret, from the OS keyring or the environment.

Lookup order for each secret: the keyring (service `erpsync-tui`) when a working backend exists, then
`ERPSYNC_<SITE>_API_KEY` / `ERPSYNC_<SITE>_API_SECRET` / `ERPSYNC_WEBHOOK_SECRET`. Every value found is
registered with the redactor, so it is masked in anything logged, stored or shown afterwards.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from enum import StrEnum

import keyring
import keyring.errors
from keyring.backends import fail

SERVICE = "erpsync-tui"
WEBHOOK = "webhook"
MASK = "********"
_MIN_REDACT_LEN = 4  # shorter values would mask ordinary words


class Source(StrEnum):
    KEYRING = "keyring"
    ENVIRONMENT = "environment"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """One secret: for a site (`api_key`, `api_secret`) or the webhook secret (site None)."""

    site: str | None
    field: str

    @property
    def keyring_user(self) -> str:
        return f"{self.site}:{self.field}" if self.site else f"{WEBHOOK}:secret"

    @property
    def env_var(self) -> str:
        if self.site is None:
            return "ERPSYNC_WEBHOOK_SECRET"
        return f"ERPSYNC_{self.site.upper()}_{self.field.upper()}"

    @property
    def label(self) -> str:
        return f"{self.site}.{self.field}" if self.site else "webhook secret"


def site_refs(site: str) -> tuple[SecretRef, SecretRef]:
    return SecretRef(site, "api_key"), SecretRef(site, "api_secret")


WEBHOOK_REF = SecretRef(None, "secret")


@dataclass(frozen=True, slots=True)
class SecretValue:
    ref: SecretRef
    value: str | None
    source: Source

    def masked(self) -> str:
        return mask(self.value) if self.value else "(not set)"


@dataclass(frozen=True, slots=True)
class SiteCredentials:
    site: str
    api_key: str
    api_secret: str
    source: Source

    def __repr__(self) -> str:  # never let a credential reach a traceback or a log through repr()
        return f"SiteCredentials(site={self.site!r}, api_key={MASK}, api_secret={MASK}, source={self.source})"


class MissingSecret(Exception):
    def __init__(self, ref: SecretRef) -> None:
        super().__init__(
            f"{ref.label} is not set: run `erpsync-tui secrets set {ref.site or WEBHOOK}` "
            f"or export {ref.env_var}"
        )
        self.ref = ref


# ------------------------------------------------------------------------------------------ keyring


def keyring_available() -> bool:
    """False on a headless box where no backend works (keyring's fail backend, or a broken one)."""
    try:
        backend = keyring.get_keyring()
    except Exception:
        return False
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 1) > 0


def keyring_name() -> str:
    try:
        backend = keyring.get_keyring()
    except Exception:
        return "none"
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _keyring_get(ref: SecretRef) -> str | None:
    if not keyring_available():
        return None
    try:
        return keyring.get_password(SERVICE, ref.keyring_user)
    except keyring.errors.KeyringError as exc:
        logging.getLogger("erpsync.secrets").warning("keyring read failed for %s: %s", ref.label, type(exc).__name__)
        return None


def lookup(ref: SecretRef) -> SecretValue:
    value = _keyring_get(ref)
    if value:
        register_secret(value)
        return SecretValue(ref, value, Source.KEYRING)
    value = os.environ.get(ref.env_var)
    if value:
        register_secret(value)
        return SecretValue(ref, value, Source.ENVIRONMENT)
    return SecretValue(ref, None, Source.MISSING)


def require(ref: SecretRef) -> SecretValue:
    found = lookup(ref)
    if found.value is None:
        raise MissingSecret(ref)
    return found


def site_credentials(site: str) -> SiteCredentials:
    key_ref, secret_ref = site_refs(site)
    key, secret = require(key_ref), require(secret_ref)
    source = key.source if key.source == secret.source else Source.ENVIRONMENT
    return SiteCredentials(site, key.value or "", secret.value or "", source)


def store(ref: SecretRef, value: str) -> None:
    if not keyring_available():
        raise RuntimeError(
            f"no working OS keyring here ({keyring_name()}); export {ref.env_var} instead "
            "(e.g. from a systemd EnvironmentFile readable only by the service user)"
        )
    keyring.set_password(SERVICE, ref.keyring_user, value)
    register_secret(value)


def delete(ref: SecretRef) -> bool:
    if not keyring_available():
        return False
    try:
        keyring.delete_password(SERVICE, ref.keyring_user)
    except keyring.errors.PasswordDeleteError:
        return False
    return True


def load_known_secrets(sites: list[str]) -> None:
    """Look every configured secret up once so the redactor knows them before anything is logged."""
    for site in sites:
        for ref in site_refs(site):
            lookup(ref)
    lookup(WEBHOOK_REF)


# ------------------------------------------------------------------------------------------ redaction


class _Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str) -> None:
        if len(value) < _MIN_REDACT_LEN:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


_REDACTOR = _Redactor()


def register_secret(value: str) -> None:
    _REDACTOR.register(value)


def redact(text: str) -> str:
    """Mask every known secret in `text`. Call it on anything that is logged, stored or shown."""
    return _REDACTOR.redact(text)


def mask(value: str) -> str:
    """A display form that proves a value is set without revealing it."""
    if len(value) <= 8:
        return MASK
    return f"{value[:2]}{MASK}{value[-2:]}"


class RedactingFilter(logging.Filter):
    """A logging filter that masks known secrets in the final message and any exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
