"""An S3-compatible bucket through botocore (or, where its requests would be the same,
signed by hand: :mod:`.s3signed`): bounded retries, SHA-256 transfer checksums the store
checks and keeps, conditional writes, answers confirmed, objects matched only by the
SHA-256 the store computed of the bytes it holds."""

from __future__ import annotations

import hashlib
import html
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from pakman.digest import MULTIPART_CHUNK, MULTIPART_THRESHOLD, b64
from pakman.errors import ConfigError, PublishError
from pakman.storage.multipart import Multipart, UploadedPart, condition, raise_conflict
from pakman.storage.objects import (
    Condition,
    Deferred,
    LocalObject,
    Progress,
    RemoteObject,
    Staged,
    check_deadline,
    redact_url,
    too_large,
)
from pakman.storage.s3errors import BAD_DIGEST, S3Errors

_T = TypeVar("_T")


if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pakman.storage.s3signed import SignedRequests


# S3's bucket naming rules; the name reaches hosts and URL paths.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


IP_ADDRESS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_MAKING = threading.Lock()  # held while a store's fast path is made
_PROBING = threading.Lock()  # held while a store is asked whether it checks parts
PROBE_PART = 10_000  # S3's highest part number: above every real part of a smaller upload


def condition_headers(only_if: Condition | None) -> dict[str, str]:
    """:func:`~pakman.storage.multipart.condition` as the headers botocore sends."""
    named = {"IfMatch": "if-match", "IfNoneMatch": "if-none-match"}
    return {named[name]: value for name, value in condition(only_if).items()}


def put_headers(local: LocalObject, only_if: Condition | None) -> dict[str, str]:
    """The headers botocore signs for :meth:`S3Store._put_object`'s PutObject, for the
    fast path to send the same (checked against botocore's own request)."""
    return {
        "x-amz-sdk-checksum-algorithm": "SHA256",
        "x-amz-checksum-sha256": local.sha256_b64,
        "content-type": local.content_type,
        "x-amz-meta-sha256": local.sha256,
        **({"cache-control": local.cache_control} if local.cache_control else {}),
        **condition_headers(only_if),
    }


def create_headers(local: LocalObject) -> dict[str, str]:
    """The headers botocore signs for the CreateMultipartUpload of ``local``."""
    return {
        "content-type": local.content_type,
        "x-amz-meta-sha256": local.sha256,
        "x-amz-checksum-algorithm": "SHA256",
    }


def part_headers(checksum: str) -> dict[str, str]:
    """The headers botocore signs for an UploadPart with the SHA-256 ``checksum``."""
    return {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": checksum}


Parts = list[dict[str, Any]]  # each part's ETag, PartNumber and ChecksumSHA256


def complete_body(parts: Parts) -> bytes:
    """The CompleteMultipartUpload document botocore writes for ``parts``."""
    fields = ("ETag", "PartNumber", "ChecksumSHA256")
    written = "".join(
        "<Part>"
        # html.escape without quotes is xml.sax's escape (&, <, >), whose import takes urllib.
        + "".join(
            f"<{name}>{html.escape(str(part[name]), quote=False)}</{name}>"
            for name in fields
            if name in part
        )
        + "</Part>"
        for part in parts
    )
    return (
        f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{written}'
        "</CompleteMultipartUpload>"
    ).encode()


def _cache_control(local: LocalObject) -> dict[str, Any]:
    return {"CacheControl": local.cache_control} if local.cache_control else {}


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
    # Requests without botocore (:mod:`.s3signed`): None until decided, False once off.
    _fast: SignedRequests | Literal[False] | None = field(default=None, init=False, repr=False)
    # Whether the store refuses a part whose bytes are not its SHA-256: None until asked.
    _checks_parts: bool | None = field(default=None, init=False, repr=False)

    def describe(self) -> str:
        where = f" at {redact_url(self.endpoint)}" if self.endpoint else ""
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
                    # None, not True: botocore then takes the CA bundle a user names
                    # (AWS_CA_BUNDLE, ca_bundle in the AWS config) as the AWS CLI does.
                    verify=None if self.verify_tls else False,
                    config=config,
                ),
            )
        return self._client

    def _fast_requests(self) -> SignedRequests | None:
        """The fast path (:mod:`.s3signed`), where it applies and has met nothing unexpected
        yet."""
        if self._fast is None:
            from pakman.storage.s3signed import signed_requests

            # Upload threads ask at once: one makes it while the others wait, none of them
            # taking "not made yet" for "off".
            with _MAKING:
                if self._fast is None:
                    made: SignedRequests | Literal[False] = False  # a failure leaves it off
                    try:
                        made = (
                            signed_requests(
                                self.bucket,
                                self.endpoint,
                                self.region or "us-east-1",
                                self.access_key_id,
                                self.secret_access_key,
                                self.addressing_style,
                                self.verify_tls,
                            )
                            or False
                        )
                    finally:
                        self._fast = made
        return self._fast or None

    def _on_fast_path(self, call: Callable[[SignedRequests], _T]) -> tuple[bool, _T | None]:
        """``call`` on the fast path: (True, its answer), or (False, None) when there is
        no fast path or it met an answer it does not handle, which turns it off for the
        rest of the run and leaves the request to botocore (its errors and retries)."""
        fast = self._fast_requests()
        if fast is None:
            return False, None
        from pakman.storage.s3signed import Unexpected

        self.check_deadline()
        try:
            return True, call(fast)
        except Unexpected:
            self._fast = False
            return False, None

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

    def list(self, prefix: str, *, checksums: bool = False) -> dict[str, RemoteObject]:
        """The objects under ``prefix``; with ``checksums``, each with the checksums the
        store keeps (a listing has none: one HEAD each, side by side)."""

        def listing() -> dict[str, RemoteObject]:
            found = {}
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    found[key] = RemoteObject(
                        key,
                        item["Size"],
                        item.get("ETag", "").strip('"'),
                        modified=item["LastModified"].timestamp()
                        if "LastModified" in item
                        else None,
                    )
            return found

        _, found_fast = self._on_fast_path(lambda fast: fast.list(prefix))
        if found_fast is not None:
            found = found_fast
        else:
            with self.errors():
                found = self._read(listing)
        if not checksums or not found:
            return found
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            headed = pool.map(self.head, list(found))
            return {key: head or found[key] for key, head in zip(found, headed, strict=True)}

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool:
        """Whether storage holds these bytes, judged only by what the store computed over
        the bytes it holds: the SHA-256 it checked and kept (of the whole object, or
        composite of the parts). A store that keeps checksums but no SHA-256 proves
        nothing (a CRC-32 is forged with four bytes): the object is sent again. Only a
        store that keeps no checksum at all is judged by its ETag, the MD5 of a single
        PUT or the composite of the planned parts; so is a store that this run saw take a
        part sent with a wrong SHA-256 (moto): the checksum it keeps is the one it was
        sent, not one it computed. Metadata (the sha256 pakman stores beside an object) is
        never evidence."""
        if local.size != remote.size:
            return False
        if remote.checksummed is None:
            remote = self.head(remote.key) or remote
        unchecked = self._checks_parts is False
        if remote.sha256 is not None and not unchecked:
            return local.holds(remote.sha256)
        if remote.checksummed is not False and not unchecked:
            return False
        return remote.etag is not None and remote.etag == local.store_etag()

    def put(
        self,
        local: LocalObject,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,
    ) -> str:
        """One PUT, for objects below the multipart threshold (bigger ones are staged);
        with ``only_if``, only while the object is as planned (else :class:`Conflict`).
        Returns the ETag the store gave it."""
        if local.body is not None:
            body = local.body
        else:
            assert local.path is not None
            body = local.path.read_bytes()
            # What is sent must be what was verified, by SHA-256 (the store checks it too,
            # where it checks checksums).
            if len(body) != local.size or hashlib.sha256(body).hexdigest() != local.sha256:
                raise local.changed()
        headers = put_headers(local, only_if)
        _, sent = self._on_fast_path(lambda fast: fast.put(local.key, body, headers))
        answer = sent if sent is not None else self._put_object(local, body, only_if)
        self.confirm(
            answer,
            f"PUT {local.key}",
            local.sha256_b64,
            lambda: hashlib.md5(body).hexdigest(),  # noqa: S324 - S3's ETag
            field="ChecksumSHA256",
        )
        if progress:
            progress(local.size)
        return str(answer.get("ETag") or "").strip('"')

    def _put_object(self, local: LocalObject, body: bytes, only_if: Condition | None) -> Any:
        with self.errors():
            # The server checks the body against ChecksumSHA256, rejects a mismatch, and
            # keeps it: what proves, on a later run, which bytes it holds.
            try:
                return self.client.put_object(
                    Bucket=self.bucket,
                    Key=local.key,
                    Body=body,
                    ChecksumAlgorithm="SHA256",  # names the checksum sent, as the SDKs do
                    ChecksumSHA256=local.sha256_b64,
                    ContentType=local.content_type,
                    Metadata={"sha256": local.sha256},
                    **condition(only_if),  # type: ignore[arg-type]
                    **_cache_control(local),
                )
            except Exception as error:
                raise_conflict(error, local.key)
                raise

    def stage(
        self,
        local: LocalObject,
        pool: Executor,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,
    ) -> Staged:
        """Big objects: send the parts now, complete the multipart upload on commit (with
        ``only_if``, only while the object is as planned)."""
        if local.path is None or local.size < MULTIPART_THRESHOLD:
            return Deferred(lambda: self.put(local, progress, only_if=only_if))
        # A key that names its content (the archive's) can resume an interrupted upload:
        # its parts are re-used where their SHA-256 matches the verified part's, and it is
        # kept if this run fails.
        staged = self._start_multipart(local, resumable=local.sha256 in local.key)
        staged.only_if = only_if
        try:
            staged.store_checks = self._store_checks_parts(local, staged.upload_id)
        except BaseException:
            staged.abort()  # or kept, to be resumed, as any failed upload of the archive
            raise
        path = local.path
        for number, offset in enumerate(range(0, local.size, MULTIPART_CHUNK), start=1):
            length = min(MULTIPART_CHUNK, local.size - offset)
            staged.parts.append(pool.submit(staged.send, path, number, offset, length, progress))
        return staged

    def _store_checks_parts(self, local: LocalObject, upload_id: str) -> bool:
        """Whether this store refuses a part whose bytes do not have the SHA-256 sent with
        it, asked once per run (:meth:`_refuses_wrong_part`); an upload with part
        :data:`PROBE_PART` of its own is not asked about."""
        if len(local.part_sha256) >= PROBE_PART:
            return False
        with _PROBING:
            if self._checks_parts is None:
                self._checks_parts = self._refuses_wrong_part(local.key, upload_id)
            return self._checks_parts

    def _refuses_wrong_part(self, key: str, upload_id: str) -> bool:
        """Send a one-byte part, sent with another byte's SHA-256, as part
        :data:`PROBE_PART` of ``upload_id`` (completed without it). A store that checks
        refuses it, 400 BadDigest as S3 does; one that takes it (moto does), or refuses it
        for another reason, has each part hashed here before it is sent."""
        body = b"\0"
        wrong = b64(hashlib.sha256(b"\1").digest())
        fast, refused = self._on_fast_path(
            lambda fast: fast.refuses_part(key, upload_id, PROBE_PART, body, part_headers(wrong))
        )
        if fast:
            return bool(refused)
        from botocore.exceptions import ClientError

        with self.errors():
            try:
                self._upload_part(key, upload_id, PROBE_PART, body, wrong)
            except ClientError as error:
                return bool(error.response.get("Error", {}).get("Code") == BAD_DIGEST)
        return False

    def _start_multipart(self, local: LocalObject, *, resumable: bool) -> Multipart:
        upload_id, uploaded = self._unfinished(local.key) if resumable else (None, {})
        if upload_id is None:
            headers = create_headers(local)
            _, upload_id = self._on_fast_path(
                lambda fast: fast.create_multipart(local.key, headers)
            )
            if upload_id is None:
                with self.errors():
                    created = self.client.create_multipart_upload(
                        Bucket=self.bucket,
                        Key=local.key,
                        ContentType=local.content_type,
                        Metadata={"sha256": local.sha256},
                        ChecksumAlgorithm="SHA256",
                    )
                upload_id = created.get("UploadId")
            if not isinstance(upload_id, str) or not upload_id:
                raise PublishError(
                    f"storage {self.describe()}: the answer to starting the multipart upload"
                    f" of {local.key} has no UploadId: is the endpoint really S3?"
                )
        return Multipart(self, local, upload_id, uploaded=uploaded, keep_on_failure=resumable)

    def _unfinished(self, key: str) -> tuple[str | None, dict[int, UploadedPart]]:
        """The newest unfinished SHA-256 multipart upload of ``key`` and its parts.

        Uploads with another checksum algorithm (or none) cannot take SHA-256 parts, and
        their parts prove nothing, so they are left alone.
        """
        _, listed = self._on_fast_path(lambda fast: fast.list_multipart(key))
        with self.errors():
            if listed is None:
                answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
                listed = [
                    {**u, "Initiated": u["Initiated"].isoformat()}
                    for u in cast(Parts, answer.get("Uploads", []))
                ]
            uploads = [
                u for u in listed if u.get("Key") == key and u.get("ChecksumAlgorithm") == "SHA256"
            ]
            if not uploads:
                return None, {}
            upload_id = max(uploads, key=lambda u: str(u["Initiated"]))["UploadId"]
            parts = {}
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    parts[part["PartNumber"]] = UploadedPart(
                        part["ETag"].strip('"'), part["Size"], part.get("ChecksumSHA256")
                    )
        return upload_id, parts

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, checksum: str
    ) -> dict[str, Any]:
        """UploadPart with its SHA-256 (base64), which the store checks: the answer's ETag
        and the checksum it echoes."""
        headers = part_headers(checksum)
        _, sent = self._on_fast_path(
            lambda fast: fast.upload_part(key, upload_id, number, data, headers)
        )
        if sent is not None:
            return sent
        with self.errors():
            return self._upload_part(key, upload_id, number, data, checksum)

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, checksum: str
    ) -> dict[str, Any]:
        return dict(
            self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
        )

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Parts,
        only_if: Condition | None,
    ) -> dict[str, Any]:
        """CompleteMultipartUpload of ``parts`` (with ``only_if``, only while the object is
        as planned, else :class:`Conflict`): the answer's ETag and checksum."""
        body = complete_body(parts)
        headers = condition_headers(only_if)
        _, done = self._on_fast_path(
            lambda fast: fast.complete_multipart(key, upload_id, body, headers)
        )
        if done is not None:
            return done
        with self.errors():
            try:
                return dict(
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                        **condition(only_if),  # type: ignore[arg-type]
                    )
                )
            except Exception as error:
                raise_conflict(error, key)
                raise

    def abort_multipart(self, key: str, upload_id: str) -> None:
        fast, _ = self._on_fast_path(lambda fast: fast.abort_multipart(key, upload_id))
        if not fast:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

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
        fast, got = self._on_fast_path(lambda fast: fast.get(key))
        if fast:
            return got
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

    def read_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str] | None:
        """The object and its ETag, or None: what a conditional write names. With
        ``limit``, a bigger object is refused (:class:`TooLarge`) as its body streams in,
        never held whole."""
        from botocore.exceptions import ClientError

        def get() -> tuple[bytes, str] | None:
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            body = answer["Body"]
            if limit is None:
                return body.read(), str(answer.get("ETag") or "")
            try:
                if answer.get("ContentLength", 0) > limit:
                    raise too_large(self.describe(), key, limit)
                chunks, got = [], 0
                while chunk := body.read(1024 * 1024):  # read(n) would take n bytes at once
                    got += len(chunk)
                    if got > limit:
                        raise too_large(self.describe(), key, limit)
                    chunks.append(chunk)
            finally:
                body.close()
            return b"".join(chunks), str(answer.get("ETag") or "")

        with self.errors():
            return self._read(get)

    def write_if(self, local: LocalObject, version: str | None) -> bool:
        """PUT ``local`` only while the object is still at ``version`` (its ETag; None:
        absent), with If-Match or If-None-Match: False when another writer won."""
        from botocore.exceptions import ClientError

        assert local.body is not None  # an index, made in memory
        condition = {"IfMatch": version} if version else {"IfNoneMatch": "*"}
        with self.errors():
            try:
                answer = self.client.put_object(
                    Bucket=self.bucket,
                    Key=local.key,
                    Body=local.body,
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=local.crc32_b64,
                    ContentType=local.content_type,
                    **_cache_control(local),
                    **condition,  # type: ignore[arg-type]
                )
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        self.confirm(answer, f"PUT {local.key}", local.crc32_b64, lambda: local.etag)
        return True

    def head(self, key: str) -> RemoteObject | None:
        fast, headed = self._on_fast_path(lambda fast: fast.head(key))
        if fast:
            return headed
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
            head.get("ChecksumCRC32"),
            head.get("ChecksumSHA256"),
            checksummed=any(name.startswith("Checksum") for name in head),
        )

    def delete(self, key: str) -> None:
        fast, _ = self._on_fast_path(lambda fast: fast.delete(key))
        if fast:
            return
        with self.errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def errors(self) -> S3Errors:
        self.check_deadline()
        return S3Errors(self)

    def check_deadline(self) -> None:
        check_deadline(self.deadline, self.describe())

    def confirm(
        self,
        answer: Any,
        what: str,
        crc32: str,
        md5: Callable[[], str | None],
        *,
        field: str = "ChecksumCRC32",
    ) -> None:
        """The server must confirm the bytes it stored: its echo of the checksum sent (in
        ``field``; ``crc32`` names the value) or its ETag (MD5).

        An endpoint that answers 200 to anything (a captive portal, a misrouted proxy)
        confirms neither, and nothing is reported as uploaded that was not. The MD5 is
        only computed for a server that does not echo checksums.
        """
        answer = answer if isinstance(answer, dict) else {}
        echoed = answer.get(field)
        etag = str(answer.get("ETag") or "").strip('"')
        if echoed == crc32 or (not echoed and etag and etag == md5()):
            return
        raise PublishError(
            f"storage {self.describe()}: the answer to {what} does not confirm the bytes sent"
            f" (ETag {etag[:40]!r}{', checksum differs' if echoed else ''}):"
            " is the endpoint really S3-compatible?"
        )
