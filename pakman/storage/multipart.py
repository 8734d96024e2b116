"""Multipart uploads: parts sent side by side, each checked against the SHA-256 of the
same part in the verified read (by the store, where it is shown to check), resumed part
by part where an earlier run left them (by the SHA-256 the store kept), completed on
commit, conditionally."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pakman.digest import b64
from pakman.errors import PublishError
from pakman.storage.objects import Condition, Conflict, LocalObject, Progress


class Bucket(Protocol):
    """What a multipart upload asks of its bucket (:class:`~pakman.storage.s3.S3Store`)."""

    def describe(self) -> str: ...
    def errors(self) -> AbstractContextManager[None]: ...
    def confirm(
        self,
        answer: Any,
        what: str,
        crc32: str,
        md5: Callable[[], str | None],
        *,
        field: str = ...,
    ) -> None: ...
    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, checksum: str
    ) -> dict[str, Any]: ...
    def complete_multipart(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], only_if: Condition | None
    ) -> dict[str, Any]: ...
    def abort_multipart(self, key: str, upload_id: str) -> None: ...


def condition(only_if: Condition | None) -> dict[str, str]:
    """The headers of a write that happens only while the object is as planned."""
    if only_if is None:
        return {}
    return {"IfMatch": only_if.etag} if only_if.etag else {"IfNoneMatch": "*"}


def raise_conflict(error: Exception, key: str) -> None:
    """A refused condition (412, or 409 for a write racing another) as :class:`Conflict`."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise Conflict(key) from None


@dataclass(frozen=True)
class UploadedPart:
    """A part an earlier, interrupted run sent, as ListParts reports it."""

    etag: str
    size: int
    sha256: str | None  # base64: the SHA-256 the store checked and kept

    def holds(self, size: int, sha256: str) -> bool:
        """Only the SHA-256 the store kept proves the part's bytes: a part without one is
        sent again."""
        return size == self.size and self.sha256 == sha256


@dataclass
class Multipart:
    store: Bucket
    local: LocalObject
    upload_id: str
    parts: list[Future[dict[str, Any]]] = field(default_factory=list)
    uploaded: dict[int, UploadedPart] = field(default_factory=dict)  # from a run before
    keep_on_failure: bool = False
    reused: int = 0
    only_if: Condition | None = None  # completed only while the object is as planned
    store_checks: bool = False  # the store refuses a part that does not match its SHA-256
    stopped: bool = False

    def send(
        self, path: Path, number: int, offset: int, length: int, progress: Progress | None
    ) -> dict[str, Any]:
        if self.stopped:
            raise PublishError("upload stopped")
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        known = self.local.part_sha256
        if len(data) != length or len(known) < number:
            raise self.local.changed()
        # What is sent must be what was verified: each part goes with the SHA-256 of the
        # same part in the verified read. A store shown in this run to refuse a part that
        # does not match it checks that; any other store's parts are checked here first.
        digest = known[number - 1]
        if not self.store_checks and hashlib.sha256(data).digest() != digest:
            raise self.local.changed()
        checksum = b64(digest)
        earlier = self.uploaded.get(number)
        if earlier and earlier.holds(length, checksum):
            self.reused += 1
            if progress:
                progress(length)
            return {"ETag": f'"{earlier.etag}"', "PartNumber": number, "ChecksumSHA256": checksum}
        try:
            answer = self.store.upload_part(self.local.key, self.upload_id, number, data, checksum)
        except PublishError:
            # Refused, maybe as not matching its SHA-256: say so if the file changed.
            if self.store_checks and hashlib.sha256(data).digest() != digest:
                raise self.local.changed() from None
            raise
        self.store.confirm(
            answer,
            f"part {number} of {self.local.key}",
            checksum,
            lambda: hashlib.md5(data).hexdigest(),  # noqa: S324 - S3's part ETag
            field="ChecksumSHA256",
        )
        if progress:
            progress(length)
        return {"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}

    def commit(self) -> str:
        """Complete the upload once every part is in; returns the object's ETag."""
        try:
            parts = [future.result() for future in self.parts]
            if len(parts) != len(self.local.part_sha256):
                raise self.local.changed()
            answer = self.store.complete_multipart(
                self.local.key, self.upload_id, parts, self.only_if
            )
            etag = str(answer.get("ETag") or "").strip('"')
            echoed = answer.get("ChecksumSHA256")
            if not etag.endswith(f"-{len(parts)}") or (
                echoed and echoed != self.local.composite_sha256()
            ):
                raise PublishError(
                    f"storage {self.store.describe()}: the answer to completing {self.local.key}"
                    f" does not confirm its {len(parts)} parts (ETag {etag[:40]!r})"
                )
        except BaseException as error:
            self.abort(keep=self.keep_on_failure and not isinstance(error, Conflict))
            raise
        return etag

    def abort(self, keep: bool | None = None) -> None:
        for future in self.parts:
            future.cancel()
        self.stopped = True
        if self.keep_on_failure if keep is None else keep:
            return  # the next run resumes it; a bucket lifecycle rule reaps abandoned ones
        with contextlib.suppress(Exception):
            self.store.abort_multipart(self.local.key, self.upload_id)
