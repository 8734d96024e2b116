"""Secrets (signing keys, S3 and API credentials) stay out of output, files and reprs."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from pakman import keys
from pakman.errors import ConfigError, redact
from pakman.publish.instellar import Client, Storage
from pakman.storage.options import StoreOptions
from pakman.storage.s3 import S3Store

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


KEY_ID = "AKIABOUNDARYTESTKEY1"


def test_reprs_hide_credentials() -> None:
    store = S3Store(
        bucket="b",
        endpoint="https://user:pw@s3.example.com",
        access_key_id=SECRET,
        secret_access_key=SECRET,
    )
    client = Client(endpoint="https://api", auth_token=SECRET, package_token=SECRET)
    storage = Storage("https://s3", "r", "b", SECRET, SECRET)
    for thing in (store, client, storage, keys.generate(2048)):
        assert SECRET not in repr(thing)
        assert "PRIVATE KEY" not in repr(thing)
    assert store.describe() == "s3://b at https://s3.example.com"  # userinfo dropped


def test_an_unexpected_failure_is_one_redacted_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last-resort handler: any exception a command did not expect."""
    from pakman import cli

    def explode(_: Any) -> int:
        raise RuntimeError(f"boom at https://user:{SECRET}@example.com/?sig={SECRET}")

    monkeypatch.setenv("INSTELLAR_AUTH_TOKEN", SECRET)
    monkeypatch.setattr(cli.check, "cmd", explode)
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)
    assert cli.main(["check"]) == 1
    line = errors.getvalue().strip()
    assert line.startswith("error: unexpected RuntimeError: boom at https://***@example.com/?***")
    assert SECRET not in line
    assert "\n" not in line


def test_module_credentials_are_checked_as_the_cli_checks_them() -> None:
    with pytest.raises(ConfigError, match="secret-access-key: must be printable ASCII"):
        StoreOptions.resolve({}, bucket="b", access_key_id=KEY_ID, secret_access_key="a\nb")


def test_redaction_catches_escaped_and_encoded_forms() -> None:
    secret = "AKIA-REDACT-ME\n"
    for shown in (repr(secret), "AKIA-REDACT-ME%0A", str(secret.encode()), "AKIA-REDACT-ME"):
        assert "REDACT" not in redact(f"Credential={shown}/20260101", [secret]), shown
