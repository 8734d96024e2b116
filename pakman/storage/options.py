"""The validated store options, from arguments and the environment, and the store they open.

Every front end (CLI, Dagger module, ``deploy``) opens storage through :func:`open_checked`,
so a bad bucket, endpoint or missing credentials are refused before any heavy work.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pakman.errors import ConfigError, check_credential

if TYPE_CHECKING:
    from pakman.storage.filestore import FileStore
    from pakman.storage.s3 import S3Store

DEFAULT_REGION = "us-east-1"
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64


class AddressingStyle(enum.Enum):
    """How an S3 bucket is addressed."""

    AUTO = "auto"
    """Virtual-hosted where the endpoint allows it, else path style."""
    PATH = "path"
    """https://endpoint/bucket/key"""
    VIRTUAL = "virtual"
    """https://bucket.endpoint/key"""


@dataclass(frozen=True)
class StoreOptions:
    """Where to publish: an S3-compatible bucket or a ``file:///`` folder."""

    bucket: str | None = None
    store: str | None = None  # file:///dir or s3://bucket
    endpoint: str | None = None
    region: str = DEFAULT_REGION
    addressing_style: AddressingStyle = AddressingStyle.AUTO
    verify_tls: bool = True
    concurrency: int = DEFAULT_CONCURRENCY
    create_bucket: bool = False
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        bucket: str | None = None,
        store: str | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        addressing_style: str | AddressingStyle = AddressingStyle.AUTO,
        verify_tls: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        create_bucket: bool = False,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> StoreOptions:
        """Options from arguments, then ``AWS_REGION`` and ``AWS_ENDPOINT_URL[_S3]``.

        Credentials are checked, whether given or left to botocore to read from ``env``.
        """
        check_credential("access-key-id", access_key_id or None)
        check_credential("secret-access-key", secret_access_key or None)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            check_credential(name, env.get(name) or None)
        try:
            style = AddressingStyle(addressing_style)
        except ValueError:
            raise ConfigError(
                f"--addressing-style: must be auto, path or virtual (got {addressing_style!r})"
            ) from None
        return cls(
            bucket=bucket or None,
            store=store or None,
            endpoint=endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION,
            addressing_style=style,
            verify_tls=verify_tls,
            concurrency=check_concurrency(concurrency),
            create_bucket=create_bucket,
            access_key_id=access_key_id or None,
            secret_access_key=secret_access_key or None,
        )

    def open(self) -> FileStore | S3Store:
        from pakman.storage.target import open_store

        return open_store(
            self.store,
            self.bucket,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            addressing_style=self.addressing_style.value,
            verify_tls=self.verify_tls,
            concurrency=self.concurrency,
        )


def check_concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency: must be 1 to {MAX_CONCURRENCY} (got {value})")
    return value


def open_checked(store: StoreOptions) -> FileStore | S3Store:
    """The store, its name, endpoint and credentials checked; no request is made."""
    from pakman.storage.s3 import S3Store

    opened = store.open()  # refuses a bad --store, --bucket or --endpoint
    given = store.access_key_id and store.secret_access_key
    if isinstance(opened, S3Store) and not given and not _credentials_in_env(os.environ):
        # botocore's own search (variables, profiles, a role): what the upload would use.
        import botocore.session
        from botocore.exceptions import BotoCoreError

        try:
            found = botocore.session.get_session().get_credentials()
        except BotoCoreError as error:  # a profile that is not there, a broken config file
            raise ConfigError(f"storage {opened.describe()}: credentials: {error}") from None
        if found is None:
            raise ConfigError(
                f"storage {opened.describe()}: no credentials"
                " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile)"
            )
    return opened


def _credentials_in_env(env: Mapping[str, str]) -> bool:
    """Whether botocore's search would find credentials in ``env`` first: both keys set
    and no profile named. Then its import (half a second of CPU) is left to the requests,
    which run beside verification."""
    return bool(
        env.get("AWS_ACCESS_KEY_ID")
        and env.get("AWS_SECRET_ACCESS_KEY")
        and not env.get("AWS_PROFILE")
        and not env.get("AWS_DEFAULT_PROFILE")
    )
