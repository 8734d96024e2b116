"""The objects publish moves and what it asks of storage: local files described by the
digests of the bytes verified in this run, remote objects as a store reports them, and
the :class:`Store` protocol the S3 and file stores implement."""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from pakman.digest import MULTIPART_CHUNK, Digest, b64, crc32_b64
from pakman.errors import ConfigError, PublishError


@dataclass(frozen=True)
class LocalObject:
    """A file to publish, described by the digests of the bytes read (and verified) in this
    run: size, SHA-256 (of each part too, for multipart sizes), CRC-32 and, below the
    multipart threshold, the MD5 ETag.

    The SHA-256 names the contents (manifest, object metadata, the archive's key) and is
    the transfer checksum S3 verifies each body (or part) against and keeps: what proves,
    on a later run, that storage holds these bytes. Every upload compares the bytes it
    sends with these digests.
    """

    key: str
    path: Path | None
    size: int
    sha256: str
    etag: str | None  # the MD5 a single PUT gets as its ETag; None for multipart sizes
    content_type: str
    crc32: int | None  # None for the archive, whose CRC-32 nothing uses
    body: bytes | None = None  # for small generated objects such as the manifest
    part_sha256: tuple[bytes, ...] = ()  # per MULTIPART_CHUNK part, for multipart sizes
    cache_control: str | None = None  # the Cache-Control header the object is served with

    @property
    def crc32_b64(self) -> str:
        assert self.crc32 is not None  # taken for every file but the archive
        return crc32_b64(self.crc32)

    @property
    def sha256_b64(self) -> str:
        """The SHA-256 as a single PUT sends it and S3 keeps it."""
        return b64(bytes.fromhex(self.sha256))

    def composite_sha256(self) -> str | None:
        """The checksum S3 keeps for these bytes uploaded in MULTIPART_CHUNK parts: the
        SHA-256 of the parts' SHA-256s, then ``-<parts>``; None below the threshold."""
        if not self.part_sha256:
            return None
        joined = hashlib.sha256(b"".join(self.part_sha256)).digest()
        return f"{b64(joined)}-{len(self.part_sha256)}"

    def holds(self, stored_sha256: str) -> bool:
        """Whether the SHA-256 a store computed and kept (whole, or composite) is of these
        bytes."""
        return stored_sha256 in (self.sha256_b64, self.composite_sha256())

    def store_etag(self) -> str:
        """The ETag a store without checksums gives these bytes: the MD5 of a single PUT,
        or the composite MD5 of the planned parts, read again only for such a store (and
        only while the parts' SHA-256s are still the verified ones)."""
        if self.body is not None:
            return hashlib.md5(self.body).hexdigest()  # noqa: S324 - S3's ETag
        if self.etag is not None:
            return self.etag
        assert self.path is not None
        digests = []
        parts = []
        with self.path.open("rb") as handle:
            while part := handle.read(MULTIPART_CHUNK):
                digests.append(hashlib.md5(part).digest())  # noqa: S324 - S3's ETag
                parts.append(hashlib.sha256(part).digest())
        # The MD5s must be of the verified bytes: a file rewritten since is not compared.
        if tuple(parts) != self.part_sha256:
            raise self.changed()
        return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"  # noqa: S324

    def changed(self) -> ConfigError:
        """The error for a file whose bytes are no longer those that were verified."""
        return ConfigError(
            f"{self.path}: changed after it was verified (its bytes now differ from those"
            " read at the start of this run): nothing claims it; re-run on a tree that"
            " nothing is writing to"
        )


def local_object(key: str, path: Path, digest: Digest) -> LocalObject:
    """The object of ``path`` under ``key``, from the digests of one read of it."""
    return LocalObject(
        key,
        path,
        digest.size,
        digest.sha256,
        digest.md5,
        content_type(key),
        digest.crc32,
        part_sha256=digest.part_sha256,
    )


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str | None = None
    crc32: str | None = None  # the checksum S3 stored, when a HEAD fetched it
    sha256: str | None = None  # the SHA-256 S3 computed and stored, when a HEAD fetched it
    checksummed: bool | None = None  # whether the store keeps any checksum (None: not asked)
    modified: float | None = None  # when it was last written (Unix time), from a listing


@dataclass(frozen=True)
class Condition:
    """A write that happens only while the object is as the run planned against: at this
    ETag, or absent (None). Another writer in between makes it fail, not overwrite."""

    etag: str | None


class Conflict(Exception):
    """A conditional write found the object changed since the run planned against it."""


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


def hash_file(path: Path, key: str) -> LocalObject:
    """The object of ``path`` under ``key``, read once now (for files not verified)."""
    from pakman.digest import digest_file

    return local_object(key, path, digest_file(path))


def bytes_object(key: str, body: bytes, cache_control: str | None = None) -> LocalObject:
    """A small in-memory object (the manifest)."""
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    sha256 = hashlib.sha256(body).hexdigest()
    return LocalObject(
        key,
        None,
        len(body),
        sha256,
        md5,
        content_type(key),
        zlib.crc32(body),
        body,
        cache_control=cache_control,
    )


class TooLarge(PublishError):
    """An object read with a limit is bigger than the limit."""


def too_large(where: str, key: str, limit: int) -> TooLarge:
    return TooLarge(f"storage {where}: {key} is larger than {limit // (1024 * 1024)} MiB")


class Store(Protocol):
    """What the publisher needs from storage."""

    def describe(self) -> str: ...

    def connect(self) -> None: ...

    def ensure_ready(self, create: bool) -> None: ...

    def list(self, prefix: str, *, checksums: bool = False) -> dict[str, RemoteObject]: ...

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool: ...

    def put(
        self,
        local: LocalObject,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,
    ) -> str | None: ...

    def stage(
        self,
        local: LocalObject,
        pool: Executor,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,
    ) -> Staged: ...

    def get(self, key: str) -> bytes | None: ...

    def read_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str] | None: ...

    def write_if(self, local: LocalObject, version: str | None) -> bool: ...

    def head(self, key: str) -> RemoteObject | None: ...

    def delete(self, key: str) -> None: ...

    def check_deadline(self) -> None: ...


Progress = Callable[[int], None]


class Staged(Protocol):
    """An upload whose bytes move now but which becomes visible only on commit (which
    returns the ETag the store gave it, if any)."""

    def commit(self) -> str | None: ...

    def abort(self) -> None: ...


@dataclass
class Deferred:
    """Staging for objects too small to split: the whole PUT happens at commit."""

    action: Callable[[], str | None]

    def commit(self) -> str | None:
        return self.action()

    def abort(self) -> None:
        pass


def check_deadline(deadline: float | None, where: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise PublishError(f"storage {where}: gave up: the run passed its deadline (--timeout)")


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
