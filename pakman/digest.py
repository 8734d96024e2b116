"""What one read of a file tells: size, SHA-256, CRC-32, the MD5 S3 uses as a single
PUT's ETag, and each multipart part's SHA-256.

Verification reads every package and index once (:mod:`pakman.apk`) and feeds the same
bytes to a :class:`Digester`, so the manifest's SHA-256, the transfer checksums and the
archive check all describe the very bytes that were verified, without a second read.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MIB
MULTIPART_CHUNK = 16 * MIB  # S3 allows 10,000 parts: objects up to 156 GiB
READ_CHUNK = 1 * MIB


@dataclass(frozen=True)
class Digest:
    """The digests of one file's bytes, as read in this run."""

    size: int
    sha256: str
    crc32: int | None  # None where not asked for (the archive's is never used)
    md5: str | None  # below MULTIPART_THRESHOLD only: a single PUT's ETag
    part_sha256: tuple[bytes, ...] = ()  # per MULTIPART_CHUNK part, at or above the threshold

    @property
    def multipart(self) -> bool:
        return self.size >= MULTIPART_THRESHOLD


class Beside:
    """Chunks handed in order to one other thread, one in flight at a time: hashlib and
    zlib release the GIL on big buffers, so the work runs on a second core."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future[None] | None = None

    def run(self, work: Callable[[bytes | memoryview], None], data: bytes | memoryview) -> None:
        self.wait()
        self._pending = self._pool.submit(work, data)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()


class Digester:
    """Digests bytes as they stream by, in chunks of any size. ``expected_size`` (from
    stat) decides which: a file that will be uploaded in parts gets each part's SHA-256
    (what S3 combines into the object's checksum) and no MD5."""

    def __init__(self, expected_size: int = 0, *, crc32: bool = True) -> None:
        self._sha256 = hashlib.sha256()
        self._crc32 = crc32
        multipart = expected_size >= MULTIPART_THRESHOLD
        self._md5: Any = None if multipart else hashlib.md5()  # noqa: S324 - S3's ETag, not security
        self._crc = 0
        self._part: Any = hashlib.sha256() if multipart else None
        self._filled = 0
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def multipart(self) -> bool:
        """Whether the file, by its expected size, goes up in parts."""
        return self._part is not None

    def update(self, data: bytes | memoryview) -> None:
        self._sha256.update(data)
        if self._crc32:
            self._crc = zlib.crc32(data, self._crc)
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)
        if self._part is None:
            return
        view = memoryview(data)
        while view:
            take = min(len(view), MULTIPART_CHUNK - self._filled)
            self._part.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == MULTIPART_CHUNK:
                self._parts.append(self._part.digest())
                self._part, self._filled = hashlib.sha256(), 0

    def result(self) -> Digest:
        multipart = self._size >= MULTIPART_THRESHOLD
        # No parts when it grew past what stat said: an upload in parts then refuses it.
        parts = [*self._parts, self._part.digest()] if self._filled else list(self._parts)
        return Digest(
            size=self._size,
            sha256=self._sha256.hexdigest(),
            crc32=self._crc if self._crc32 else None,
            md5=None if multipart or self._md5 is None else self._md5.hexdigest(),
            part_sha256=tuple(parts) if multipart else (),
        )


def digest_file(path: Path) -> Digest:
    """One read of ``path``."""
    with path.open("rb") as handle:
        digester = Digester(os.fstat(handle.fileno()).st_size)
        while chunk := handle.read(READ_CHUNK):
            digester.update(chunk)
    return digester.result()


def digest_bytes(data: bytes) -> Digest:
    digester = Digester()
    digester.update(data)
    return digester.result()


def b64(digest: bytes) -> str:
    """A digest as S3 writes it in ``x-amz-checksum-sha256``: base64."""
    return base64.b64encode(digest).decode()


def crc32_b64(crc: int) -> str:
    """A CRC-32 as S3 writes it in ``x-amz-checksum-crc32``: big-endian, base64."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()
