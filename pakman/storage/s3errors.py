"""botocore's and urllib3's exceptions as one-line storage errors, secrets redacted."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pakman.errors import ConfigError, PublishError, redact


class Bucket(Protocol):
    """What an error message names of the bucket (:class:`~pakman.storage.s3.S3Store`)."""

    @property
    def bucket(self) -> str: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def secrets(self) -> list[str]: ...
    def describe(self) -> str: ...


# What S3 and S3-compatible servers answer to credentials they do not accept (versitygw
# says 404 XAdminUserNotFound for an unknown access key id).
CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "XAdminUserNotFound",
    }
)

# What S3 answers to a body whose checksum is not the one sent with it.
BAD_DIGEST = "BadDigest"


class S3Errors:
    """Turns botocore's exceptions into one-line PublishErrors with secrets redacted."""

    def __init__(self, store: Bucket) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> Literal[False]:
        if error is None or isinstance(error, PublishError | ConfigError):
            return False
        import urllib3
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
            SSLError,
        )

        where = self.store.describe()
        attempts = self.store.max_attempts
        if isinstance(error, urllib3.exceptions.HTTPError):
            message = (
                f"storage {where}: the answer broke off after {attempts} attempts"
                f" ({error.__class__.__name__})"
            )
        elif isinstance(error, NoCredentialsError):
            message = (
                f"storage {where}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        elif isinstance(error, SSLError):
            message = (
                f"storage {where}: TLS: the endpoint's certificate is not trusted"
                " (set AWS_CA_BUNDLE to the certificate of the authority that signed it,"
                " or pass --no-verify-tls)"
            )
        elif isinstance(error, EndpointConnectionError | ConnectionError):
            message = f"storage {where}: cannot reach the endpoint after {attempts} attempts"
        elif isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = details.get("Code", "?")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 403 or code in CREDENTIAL_ERRORS:
                # HEAD answers carry no body, so the code is only the status again.
                reason = f"{status}" if code == str(status) else f"{status} {code}"
                message = f"storage {where}: access denied ({reason}): check the credentials"
            elif code == "NoSuchBucket":
                message = (
                    f"storage {where}: bucket {self.store.bucket!r} does not exist"
                    " (use --create-bucket to make it)"
                )
            else:
                message = f"storage {where}: {status} {code}: {details.get('Message', '')}".rstrip()
        elif isinstance(error, BotoCoreError):
            message = f"storage {where}: {error.__class__.__name__}: {error}"
        else:
            return False
        raise PublishError(redact(message, self.store.secrets, limit=400)) from None
