"""Multipart uploads: parts sent side by side, checked against the verified bytes,
resumed part by part where an earlier run left them, completed on commit."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.digest import crc32_b64
from pakman.errors import PublishError
from pakman.publish.objects import LocalObject, Progress

if TYPE_CHECKING:
    from pakman.publish.s3 import S3Store


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


class InOrder:
    """The SHA-256 of parts read side by side, fed in part order: each part waits for the
    one before it, so the digest is of exactly the bytes sent, whatever the threads do."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._next = 1
        self._stopped = False
        self._turn = threading.Condition()

    def feed(self, number: int, data: bytes) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._next == number or self._stopped)
            if self._stopped:
                raise PublishError("upload stopped")
            self._digest.update(data)
            self._next += 1
            self._turn.notify_all()

    def stop(self) -> None:
        """A part that will never be fed: release every part waiting its turn."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()

    def hexdigest(self) -> str:
        with self._turn:
            return self._digest.hexdigest()


@dataclass
class Multipart:
    store: S3Store
    local: LocalObject
    upload_id: str
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)
    uploaded: dict[int, UploadedPart] = field(default_factory=dict)  # from a run before
    keep_on_failure: bool = False
    reused: int = 0
    sent: InOrder = field(default_factory=InOrder)

    def send(
        self, path: Path, number: int, offset: int, length: int, progress: Progress | None
    ) -> dict[str, Any]:
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
            crc = zlib.crc32(data)
            known = self.local.part_crc32
            if len(data) != length or (len(known) >= number and known[number - 1] != crc):
                raise self.local.changed()  # what is sent must be what was verified
            # ... and by SHA-256 too, checked on commit: a CRC-32 is forged with four bytes.
            self.sent.feed(number, data)
        except BaseException:
            self.sent.stop()
            raise
        checksum = crc32_b64(crc)
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
            if self.sent.hexdigest() != self.local.sha256:
                raise self.local.changed()
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
        self.sent.stop()
        if self.keep_on_failure:
            return  # the next run resumes it; a bucket lifecycle rule reaps abandoned ones
        with contextlib.suppress(Exception):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.local.key, UploadId=self.upload_id
            )
