"""Where a publish goes: ``--store file:///dir`` or ``--bucket NAME`` (and its endpoint)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pakman.errors import ConfigError
from pakman.storage.filestore import FileStore
from pakman.storage.objects import redact_url
from pakman.storage.s3 import BUCKET, IP_ADDRESS, S3Store


def open_store(
    store: str | None,
    bucket: str | None,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    addressing_style: str = "auto",
    verify_tls: bool = True,
    concurrency: int = 8,
) -> FileStore | S3Store:
    """A store from ``--store file:///dir`` or ``--bucket NAME``.

    Credentials not given here are botocore's to find (``AWS_ACCESS_KEY_ID``, profiles);
    the endpoint and region are resolved from the environment by :mod:`pakman.pipeline`.
    """
    if store and bucket:
        raise ConfigError("--store and --bucket: give one, not both")
    if store:
        parts = urlsplit(store)
        if parts.scheme == "file" and parts.path:
            return FileStore(Path(parts.path))
        if parts.scheme == "s3" and parts.netloc:
            bucket = parts.netloc
        else:
            raise ConfigError(f"--store: must be file:///path or s3://bucket (got {store!r})")
    if not bucket:
        raise ConfigError("--bucket: required (or --store file:///path for a local store)")
    if not BUCKET.fullmatch(bucket) or ".." in bucket or IP_ADDRESS.fullmatch(bucket):
        raise ConfigError(
            "--bucket: not a valid S3 bucket name: 3-63 lowercase letters, digits, dots and"
            f" hyphens, beginning and ending with a letter or digit (got {bucket[:80]!r})"
        )
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--endpoint: must be an http(s) URL (got {redact_url(endpoint)!r})")
    return S3Store(
        bucket=bucket,
        endpoint=endpoint or None,
        region=region,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        addressing_style=addressing_style,
        verify_tls=verify_tls,
        concurrency=concurrency,
    )
