"""Secrets: keyring first, environment where no keyring works, and one redactor for everything shown."""

from __future__ import annotations

import logging

import keyring
import pytest
from keyring.backends import fail

from erpsync_tui import secrets
from erpsync_tui.secrets import WEBHOOK_REF, MissingSecret, RedactingFilter, SecretRef, Source


def test_keyring_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef("cloud", "api_key")
    monkeypatch.setenv("ERPSYNC_CLOUD_API_KEY", "from-env-1234")
    secrets.store(ref, "from-keyring-5678")
    found = secrets.lookup(ref)
    assert (found.value, found.source) == ("from-keyring-5678", Source.KEYRING)


def test_environment_used_when_keyring_has_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_LOCAL_API_SECRET", "env-secret-value")
    found = secrets.lookup(SecretRef("local", "api_secret"))
    assert (found.value, found.source) == ("env-secret-value", Source.ENVIRONMENT)


def test_headless_box_without_keyring_uses_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring.set_keyring(fail.Keyring())
    assert not secrets.keyring_available()
    monkeypatch.setenv("ERPSYNC_WEBHOOK_SECRET", "hook-secret-value")
    assert secrets.lookup(WEBHOOK_REF).source == Source.ENVIRONMENT
    with pytest.raises(RuntimeError, match="export ERPSYNC_CLOUD_API_KEY"):
        secrets.store(SecretRef("cloud", "api_key"), "x" * 10)


def test_missing_secret_says_how_to_set_it() -> None:
    with pytest.raises(MissingSecret, match="erpsync-tui secrets set cloud"):
        secrets.site_credentials("cloud")


def test_site_credentials_repr_hides_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_CLOUD_API_KEY", "key-abcdef-123")
    monkeypatch.setenv("ERPSYNC_CLOUD_API_SECRET", "secret-ghijk-456")
    creds = secrets.site_credentials("cloud")
    assert creds.api_secret == "secret-ghijk-456"
    assert "secret-ghijk-456" not in repr(creds) and "key-abcdef-123" not in repr(creds)


def test_redact_masks_every_known_secret_once_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_CLOUD_API_SECRET", "s3cr3t-value-xyz")
    secrets.lookup(SecretRef("cloud", "api_secret"))
    text = "Authorization: token k:s3cr3t-value-xyz failed"
    assert secrets.redact(text) == f"Authorization: token k:{secrets.MASK} failed"
    assert secrets.redact("nothing here") == "nothing here"


def test_longer_secret_masked_whole() -> None:
    secrets.register_secret("abcd1234")
    secrets.register_secret("abcd1234-extended")
    assert secrets.redact("x abcd1234-extended y") == f"x {secrets.MASK} y"


def test_logging_filter_redacts_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    secrets.register_secret("hunter2-hunter2")
    logger = logging.getLogger("erpsync.test")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())
    try:
        logger.error("auth with %s", "hunter2-hunter2")
        try:
            raise ValueError("bad token hunter2-hunter2")
        except ValueError:
            logger.exception("boom")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "hunter2-hunter2" not in caplog.text
    assert secrets.MASK in caplog.text


def test_mask_shape() -> None:
    assert secrets.mask("short") == secrets.MASK
    assert secrets.mask("abcdefghijkl") == f"ab{secrets.MASK}kl"
