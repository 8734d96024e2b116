"""Where published objects go: S3-compatible storage (botocore) or a local folder.

Both stores answer the same few questions: what is already there (one listing),
does a remote object match a local one, and put an object atomically.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from pakman.errors import ConfigError, PublishError, redact
from pakman.hashcache import HashCache

_T = TypeVar("_T")

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# S3's bucket naming rules; the name reaches hosts and URL paths.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
MIB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MIB
MULTIPART_CHUNK = 16 * MIB  # S3 allows 10,000 parts: objects up to 156 GiB
READ_CHUNK = 1 * MIB
assert MULTIPART_CHUNK % READ_CHUNK == 0


@dataclass(frozen=True)
class LocalObject:
    """A file to publish, hashed once: size, SHA-256, CRC-32 and the S3 ETag it will get.

    The SHA-256 names the contents (manifest, object metadata, the archive's key). The
    CRC-32 is the transfer checksum S3 verifies each body against, as the AWS SDKs and
    CLI do by default: it costs the client and the server next to nothing.
    """

    key: str
    path: Path | None
    size: int
    sha256: str
    etag: str | None  # the MD5 a single PUT gets as its ETag; None for multipart sizes
    content_type: str
    crc32: int
    body: bytes | None = None  # for small generated objects such as the manifest
    part_crc32: tuple[int, ...] = ()  # per MULTIPART_CHUNK part, for multipart sizes

    @property
    def crc32_b64(self) -> str:
        return crc32_b64(self.crc32)

    def stored_checksums(self) -> set[str]:
        """The CRC-32s S3 may report for these bytes: of the whole object, or for a
        multipart upload the composite (the CRC-32 of the parts' CRC-32s)."""
        forms = {self.crc32_b64}
        if self.part_crc32:
            joined = b"".join(part.to_bytes(4, "big") for part in self.part_crc32)
            forms.add(crc32_b64(zlib.crc32(joined)))
        return forms


def crc32_b64(crc: int) -> str:
    """A CRC-32 as S3 writes it in ``x-amz-checksum-crc32``: big-endian, base64."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str | None = None
    sha256: str | None = None  # from the object's metadata, when a HEAD fetched it
    crc32: str | None = None  # the checksum S3 stored, when a HEAD fetched it


CONTENT_TYPES = {
    ".zip": "application/zip",
    ".tar.gz": "application/gzip",
    ".json": "application/json",
    # Alpine's .apk has no registered type (application/vnd.android.package-archive is
    # Android's): octet-stream keeps proxies and browsers from guessing.
    ".apk": "application/octet-stream",
}


def content_type(name: str) -> str:
    """The Content-Type stored with an object."""
    return next(
        (kind for suffix, kind in CONTENT_TYPES.items() if name.endswith(suffix)),
        "application/octet-stream",
    )


def hash_file(path: Path, key: str, cache: HashCache | None = None) -> LocalObject:
    """Hash a file in one pass: SHA-256 and CRC-32, plus the MD5 that is S3's ETag for a
    single PUT.

    Objects big enough for a multipart upload get no ETag: their ETag depends on the
    part size, so they are recognised by the SHA-256 stored in their metadata instead,
    and they get a CRC-32 per part rather than an MD5.
    """
    stat = path.stat()
    hashes = cache.get(path, stat) if cache else None
    if hashes is None:
        hashes = _hash_contents(path, multipart=stat.st_size >= MULTIPART_THRESHOLD)
        if cache:
            cache.put(path, stat, hashes)
    return LocalObject(
        key,
        path,
        stat.st_size,
        hashes["sha256"],
        hashes["md5"] or None,
        content_type(key),
        hashes["crc32"],
        part_crc32=tuple(hashes["parts"]),
    )


def _hash_contents(path: Path, multipart: bool) -> dict[str, Any]:
    """One read: SHA-256 and CRC-32 of the whole file, and its MD5 (below the multipart
    threshold) or each part's CRC-32 (at or above it)."""
    whole = hashlib.sha256()
    crc = 0
    md5 = None if multipart else hashlib.md5()  # noqa: S324 - S3's ETag, not security
    parts: list[int] = []
    part, filled = 0, 0
    with path.open("rb") as handle:
        # READ_CHUNK divides MULTIPART_CHUNK, so a chunk never straddles two parts.
        while chunk := handle.read(READ_CHUNK):
            whole.update(chunk)
            crc = zlib.crc32(chunk, crc)
            if md5:
                md5.update(chunk)
            else:
                part = zlib.crc32(chunk, part)
                filled += len(chunk)
                if filled == MULTIPART_CHUNK:
                    parts.append(part)
                    part, filled = 0, 0
    if filled:
        parts.append(part)
    return {
        "sha256": whole.hexdigest(),
        "md5": md5.hexdigest() if md5 else "",
        "crc32": crc,
        "parts": parts,
    }


def bytes_object(key: str, body: bytes) -> LocalObject:
    """A small in-memory object (the manifest)."""
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    sha256 = hashlib.sha256(body).hexdigest()
    return LocalObject(key, None, len(body), sha256, md5, content_type(key), zlib.crc32(body), body)


class Store(Protocol):
    """What the publisher needs from storage."""

    def describe(self) -> str: ...

    def connect(self) -> None: ...

    def ensure_ready(self, create: bool) -> None: ...

    def list(self, prefix: str) -> dict[str, RemoteObject]: ...

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool: ...

    def put(self, local: LocalObject, progress: Progress | None = None) -> None: ...

    def stage(
        self, local: LocalObject, pool: Executor, progress: Progress | None = None
    ) -> Staged: ...

    def get(self, key: str) -> bytes | None: ...

    def head(self, key: str) -> RemoteObject | None: ...

    def delete(self, key: str) -> None: ...

    def check_deadline(self) -> None: ...


Progress = Callable[[int], None]


class Staged(Protocol):
    """An upload whose bytes move now but which becomes visible only on commit."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...


@dataclass
class _Deferred:
    """Staging for objects too small to split: the whole PUT happens at commit."""

    action: Callable[[], None]

    def commit(self) -> None:
        self.action()

    def abort(self) -> None:
        pass


def _check_deadline(deadline: float | None, where: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise PublishError(f"storage {where}: gave up: the run passed its deadline (--timeout)")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class FileStore:
    """A folder laid out like the bucket: ``file:///srv/pakman``. Writes are atomic renames."""

    root: Path
    deadline: float | None = None  # time.monotonic() after which no write starts

    def describe(self) -> str:
        return f"file://{self.root}"

    def check_deadline(self) -> None:
        _check_deadline(self.deadline, self.describe())

    def connect(self) -> None:
        pass

    def ensure_ready(self, create: bool) -> None:
        if not self.root.is_dir():
            if not create:
                raise PublishError(f"store {self.describe()}: no such folder (use --create-bucket)")
            self.root.mkdir(parents=True)

    def _files(self, prefix: str) -> Iterator[Path]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.startswith(".pakman-"):
                    yield path

    def list(self, prefix: str) -> dict[str, RemoteObject]:
        found = {}
        for path in self._files(prefix):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                found[key] = RemoteObject(key, path.stat().st_size)
        return found

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool:
        if local.size != remote.size:
            return False
        with (self.root / remote.key).open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest() == local.sha256

    def _write_temporary(self, local: LocalObject, progress: Progress | None) -> Path:
        target = self.root / local.key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A fresh name (O_EXCL), never one another writer could have planted.
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=".pakman-")
            with os.fdopen(fd, "wb") as handle:
                if local.body is not None:
                    handle.write(local.body)
                else:
                    assert local.path is not None
                    with local.path.open("rb") as source:
                        shutil.copyfileobj(source, handle, READ_CHUNK)
            os.chmod(name, 0o644)
        except OSError as error:
            raise PublishError(
                f"store {self.describe()}: cannot write {local.key}: {error.strerror}"
            ) from None
        if progress:
            progress(local.size)
        return Path(name)

    def put(self, local: LocalObject, progress: Progress | None = None) -> None:
        self._write_temporary(local, progress).replace(self.root / local.key)

    def stage(self, local: LocalObject, pool: Executor, progress: Progress | None = None) -> Staged:
        copying = pool.submit(self._write_temporary, local, progress)
        return _FileStaged(copying, self.root / local.key)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def head(self, key: str) -> RemoteObject | None:
        path = self.root / key
        return RemoteObject(key, path.stat().st_size) if path.is_file() else None

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


@dataclass
class _FileStaged:
    copying: Future[Path]
    target: Path

    def commit(self) -> None:
        self.copying.result().replace(self.target)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.copying.result().unlink()


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


@dataclass
class S3Store:
    """An S3-compatible bucket, reached through botocore with bounded retries."""

    bucket: str
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"
    verify_tls: bool = True
    concurrency: int = 8
    max_attempts: int = 5
    deadline: float | None = None  # time.monotonic() after which no request starts
    _client: S3Client | None = field(default=None, init=False, repr=False)

    def describe(self) -> str:
        where = f" at {_redact_url(self.endpoint)}" if self.endpoint else ""
        return f"s3://{self.bucket}{where}"

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.access_key_id, self.secret_access_key) if s]

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            if self.addressing_style not in ("auto", "path", "virtual"):
                raise ConfigError(
                    "--addressing-style: must be auto, path or virtual"
                    f" (got {self.addressing_style!r})"
                )
            style = cast(Literal["auto", "path", "virtual"], self.addressing_style)
            config = Config(
                # Exponential backoff with jitter on 5xx, throttling, timeouts and resets,
                # bounded in attempts; each attempt is bounded by the timeouts below.
                retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=self.concurrency + 4,
                s3={"addressing_style": style, "payload_signing_enabled": False},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            # botocore directly: boto3 adds nothing used here but ~0.15 s of imports.
            session = botocore.session.get_session()
            self._client = cast(
                "S3Client",
                session.create_client(
                    "s3",
                    endpoint_url=self.endpoint,
                    region_name=self.region or "us-east-1",
                    aws_access_key_id=self.access_key_id,
                    aws_secret_access_key=self.secret_access_key,
                    verify=self.verify_tls,
                    config=config,
                ),
            )
        return self._client

    def connect(self) -> None:
        """Make the client (botocore's import and models): CPU work, no request."""
        _ = self.client

    def ensure_ready(self, create: bool) -> None:
        if not create:
            return  # the first listing reports a missing bucket just as well, one request sooner
        from botocore.exceptions import ClientError

        with self.errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status != 404:
                    raise
                self.client.create_bucket(Bucket=self.bucket)

    def list(self, prefix: str) -> dict[str, RemoteObject]:
        def listing() -> dict[str, RemoteObject]:
            found = {}
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    found[key] = RemoteObject(key, item["Size"], item.get("ETag", "").strip('"'))
            return found

        with self.errors():
            return self._read(listing)

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool:
        if local.size != remote.size:
            return False
        if local.etag is not None and remote.etag == local.etag:
            return True
        # Multipart uploads and encrypting stores report other ETags: ask for our hash, and
        # for the checksum the server computed of the bytes it holds, where it keeps one.
        if remote.sha256 is None:
            remote = self.head(remote.key) or remote
        # Real S3 writes a composite checksum as "<crc>-<parts>".
        if remote.crc32 is not None and remote.crc32.split("-")[0] not in local.stored_checksums():
            return False
        return remote.sha256 == local.sha256

    def put(self, local: LocalObject, progress: Progress | None = None) -> None:
        """One PUT, for objects below the multipart threshold (bigger ones are staged)."""
        if local.body is not None:
            body = local.body
        else:
            assert local.path is not None
            body = local.path.read_bytes()
        with self.errors():
            # The server checks the body against ChecksumCRC32 and rejects a mismatch.
            answer = self.client.put_object(
                Bucket=self.bucket,
                Key=local.key,
                Body=body,
                ChecksumAlgorithm="CRC32",  # names the checksum sent, as the AWS SDKs do
                ChecksumCRC32=local.crc32_b64,
                ContentType=local.content_type,
                Metadata={"sha256": local.sha256},
            )
        self.confirm(answer, f"PUT {local.key}", local.crc32_b64, lambda: local.etag)
        if progress:
            progress(local.size)

    def stage(self, local: LocalObject, pool: Executor, progress: Progress | None = None) -> Staged:
        """Big objects: send the parts now, complete the multipart upload on commit."""
        if local.path is None or local.size < MULTIPART_THRESHOLD:
            return _Deferred(lambda: self.put(local, progress))
        # A key that names its content (the archive's) can resume an interrupted upload:
        # its parts are re-used where their MD5 matches, and it is kept if this run fails.
        staged = self._start_multipart(local, resumable=local.sha256 in local.key)
        path = local.path
        for number, offset in enumerate(range(0, local.size, MULTIPART_CHUNK), start=1):
            length = min(MULTIPART_CHUNK, local.size - offset)
            staged.parts.append(pool.submit(staged.send, path, number, offset, length, progress))
        return staged

    def _start_multipart(self, local: LocalObject, *, resumable: bool) -> _Multipart:
        upload_id, uploaded = self._unfinished(local.key) if resumable else (None, {})
        if upload_id is None:
            with self.errors():
                created = self.client.create_multipart_upload(
                    Bucket=self.bucket,
                    Key=local.key,
                    ContentType=local.content_type,
                    Metadata={"sha256": local.sha256},
                    ChecksumAlgorithm="CRC32",
                )
            upload_id = created.get("UploadId")
            if not isinstance(upload_id, str) or not upload_id:
                raise PublishError(
                    f"storage {self.describe()}: the answer to starting the multipart upload"
                    f" of {local.key} has no UploadId: is the endpoint really S3?"
                )
        return _Multipart(self, local, upload_id, uploaded=uploaded, keep_on_failure=resumable)

    def _unfinished(self, key: str) -> tuple[str | None, dict[int, UploadedPart]]:
        """The newest unfinished CRC-32 multipart upload of ``key`` and its parts.

        Uploads with another checksum algorithm (or none) cannot take CRC-32 parts, so
        they are left alone.
        """
        with self.errors():
            listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            uploads = [
                u
                for u in listing.get("Uploads", [])
                if u.get("Key") == key and u.get("ChecksumAlgorithm") == "CRC32"
            ]
            if not uploads:
                return None, {}
            upload_id = max(uploads, key=lambda u: u["Initiated"])["UploadId"]
            parts = {}
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    parts[part["PartNumber"]] = UploadedPart(
                        part["ETag"].strip('"'), part["Size"], part.get("ChecksumCRC32")
                    )
        return upload_id, parts

    def _read(self, call: Callable[[], _T]) -> _T:
        """A read (GET, HEAD, a listing), retried when its answer broke off while its body
        was read: botocore retries a reset before the answer, not one inside it (urllib3's
        ProtocolError escapes it). With backoff, ``max_attempts`` in all."""
        import urllib3
        from botocore.exceptions import IncompleteReadError, ResponseStreamingError

        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except (urllib3.exceptions.HTTPError, ResponseStreamingError, IncompleteReadError):
                if attempt == self.max_attempts:
                    raise
                self.check_deadline()
                time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise

        with self.errors():
            return self._read(get)

    def head(self, key: str) -> RemoteObject | None:
        from botocore.exceptions import ClientError

        def read() -> Any:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            except ClientError as error:
                if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return None
                raise

        with self.errors():
            head = self._read(read)
        if head is None:
            return None
        return RemoteObject(
            key,
            head["ContentLength"],
            head.get("ETag", "").strip('"'),
            head.get("Metadata", {}).get("sha256"),
            head.get("ChecksumCRC32"),
        )

    def delete(self, key: str) -> None:
        with self.errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def errors(self) -> _S3Errors:
        self.check_deadline()
        return _S3Errors(self)

    def check_deadline(self) -> None:
        _check_deadline(self.deadline, self.describe())

    def confirm(self, answer: Any, what: str, crc32: str, md5: Callable[[], str | None]) -> None:
        """The server must confirm the bytes it stored: its CRC-32 echo or its ETag (MD5).

        An endpoint that answers 200 to anything (a captive portal, a misrouted proxy)
        confirms neither, and nothing is reported as uploaded that was not. The MD5 is
        only computed for a server that does not echo checksums.
        """
        answer = answer if isinstance(answer, dict) else {}
        echoed = answer.get("ChecksumCRC32")
        etag = str(answer.get("ETag") or "").strip('"')
        if echoed == crc32 or (not echoed and etag and etag == md5()):
            return
        raise PublishError(
            f"storage {self.describe()}: the answer to {what} does not confirm the bytes sent"
            f" (ETag {etag[:40]!r}{', checksum differs' if echoed else ''}):"
            " is the endpoint really S3-compatible?"
        )


@dataclass(frozen=True)
class UploadedPart:
    """A part an earlier, interrupted run sent, as ListParts reports it."""

    etag: str
    size: int
    crc32: str | None  # base64, when the server reports part checksums

    def holds(self, data: bytes, crc32: str) -> bool:
        if len(data) != self.size:
            return False
        if self.crc32 is not None:
            return self.crc32 == crc32
        return self.etag == hashlib.md5(data).hexdigest()  # noqa: S324 - S3's part ETag


@dataclass
class _Multipart:
    store: S3Store
    local: LocalObject
    upload_id: str
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)
    uploaded: dict[int, UploadedPart] = field(default_factory=dict)  # from a run before
    keep_on_failure: bool = False
    reused: int = 0

    def send(
        self, path: Path, number: int, offset: int, length: int, progress: Progress | None
    ) -> dict[str, Any]:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        known = self.local.part_crc32
        checksum = crc32_b64(known[number - 1] if len(known) >= number else zlib.crc32(data))
        earlier = self.uploaded.get(number)
        if earlier and earlier.holds(data, checksum):
            self.reused += 1
            if progress:
                progress(length)
            return {"ETag": f'"{earlier.etag}"', "PartNumber": number, "ChecksumCRC32": checksum}
        with self.store.errors():
            answer = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.local.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=checksum,
            )
        self.store.confirm(
            answer,
            f"part {number} of {self.local.key}",
            checksum,
            lambda: hashlib.md5(data).hexdigest(),  # noqa: S324 - S3's part ETag
        )
        if progress:
            progress(length)
        return {"ETag": answer["ETag"], "PartNumber": number, "ChecksumCRC32": checksum}

    def commit(self) -> None:
        try:
            parts = [future.result() for future in self.parts]
            with self.store.errors():
                answer = self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.local.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            etag = str(answer.get("ETag") or "").strip('"')
            if not etag.endswith(f"-{len(parts)}"):
                raise PublishError(
                    f"storage {self.store.describe()}: the answer to completing {self.local.key}"
                    f" does not confirm its {len(parts)} parts (ETag {etag[:40]!r})"
                )
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for future in self.parts:
            future.cancel()
        if self.keep_on_failure:
            return  # the next run resumes it; a bucket lifecycle rule reaps abandoned ones
        with contextlib.suppress(Exception):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.local.key, UploadId=self.upload_id
            )


class _S3Errors:
    """Turns botocore's exceptions into one-line PublishErrors with secrets redacted."""

    def __init__(self, store: S3Store) -> None:
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
            raise ConfigError(f"--endpoint: must be an http(s) URL (got {_redact_url(endpoint)!r})")
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
