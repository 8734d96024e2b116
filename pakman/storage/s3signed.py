"""The requests of a publish, signed with SigV4 and sent over :mod:`http.client` without
botocore: the reads (a listing, HEADs, the manifest's GET), single PUTs and DELETEs, and
multipart uploads (create, parts, complete, abort, the listing of unfinished uploads).
botocore's import and client cost half a second of CPU and its Python about 3 ms per
request: most of a re-publish's work beside the hashing, and a second of a first
publish's. The parts list of a resumed upload, bucket creation and the repository's
writes stay botocore's.

A fast path only. It runs where its requests are botocore's: an endpoint given, with no
path or user in it; credentials given or in the environment; no proxy, FIPS setting or
AWS config file that botocore would read; no S3 Express bucket. It hands over to botocore
for the rest of the run at the first answer it does not expect: an error status, a
redirect, a broken connection, a body it cannot parse. Its answers are judged as
botocore's are (presence only by the SHA-256 the store keeps); its failures are never
shown, so botocore's own request reports them, redacted, with retries.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import queue
import re
import socket
import ssl
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote_plus, urlsplit

from pakman.storage.objects import Conflict, RemoteObject
from pakman.storage.s3errors import BAD_DIGEST

UNSIGNED = "UNSIGNED-PAYLOAD"  # botocore's, with payload signing off as pakman sets it
# The error codes of a conditional write refused (412) or racing another (409).
CONDITION_REFUSED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
CONNECT_TIMEOUT = 5  # botocore's, as pakman configures it
READ_TIMEOUT = 60
BODY_LIMIT = 16 * 1024 * 1024  # a listing page of 1,000 keys or a manifest is far smaller
IP_HOST = frozenset("0123456789.")
# The suffixes AWS reserves for special buckets (S3 Express ends --x-s3 or --xa-s3).
RESERVED_SUFFIX = re.compile(r"--[a-z0-9-]*-s3$")


class Unexpected(Exception):
    """An answer the fast path does not handle: botocore takes over."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def credentials(
    access_key_id: str | None, secret_access_key: str | None, env: Mapping[str, str]
) -> Credentials | None:
    """The credentials botocore would sign with, where that is certain: both given (then
    botocore takes no token from the environment), or both in the environment with no
    profile named (botocore's search takes them first). None: left to botocore."""
    if access_key_id and secret_access_key:
        return Credentials(access_key_id, secret_access_key)
    if access_key_id or secret_access_key:
        return None
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
        return None
    return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)


def botocore_reads_more(env: Mapping[str, str], home: Path) -> bool:
    """Whether botocore's requests would depend on settings the fast path does not read:
    a proxy, FIPS or dual-stack endpoints, or an AWS config file (which can set those and
    more; a CA bundle named in the environment is read, :func:`ca_bundle`)."""
    if any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" for name in env):
        return True
    if any(name.startswith("AWS_USE_") and env[name] for name in env):
        return True
    config = env.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config")
    try:
        return Path(config).expanduser().exists()
    except (OSError, RuntimeError):  # unreadable, or no home to expand: botocore's to judge
        return True


def ca_bundle(env: Mapping[str, str]) -> str | None:
    """The CA bundle botocore verifies TLS with: the one named by ``AWS_CA_BUNDLE``, else
    ``REQUESTS_CA_BUNDLE``, else certifi's when installed, else its own. None where a
    name is blank (botocore refuses it, with its own error)."""
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        if name in env:
            return env[name] if env[name].strip() else None
    try:
        import certifi

        return str(certifi.where())
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("botocore")
        if spec is None or spec.origin is None:
            return None
        return str(Path(spec.origin).parent / "cacert.pem")


def virtual_hosted(bucket: str, host: str, style: str) -> bool | None:
    """Whether botocore addresses the bucket by host name at an endpoint given: never
    under ``auto`` or ``path``; under ``virtual`` for a dotless bucket on a host name.
    None where its rules go further (an IP address, a dotted bucket): left to it."""
    if style != "virtual":
        return False
    if set(host) <= IP_HOST or "." in bucket:
        return None
    return True


def signing_key(secret: str, day: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


Query = list[tuple[str, str | None]]  # None: a bare flag, as in ``?uploads``


def _by_name(pair: tuple[str, str | None]) -> tuple[str, str]:
    return pair[0], pair[1] or ""


def authorization(
    method: str,
    path: str,
    query: Query,
    headers: Mapping[str, str],
    creds: Credentials,
    region: str,
) -> str:
    """SigV4's Authorization header, as S3 checks it: every header given is signed;
    ``path`` is sent as given (S3 does not encode it twice); ``headers`` must hold
    ``x-amz-date`` and ``x-amz-content-sha256`` (the body's SHA-256, or unsigned)."""
    amz_date = headers["x-amz-date"]
    day = amz_date[:8]
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{_encode(k)}={_encode(v or '')}" for k, v in sorted(query, key=_by_name)),
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            ";".join(names),
            headers["x-amz-content-sha256"],
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signature = hmac.new(
        signing_key(creds.secret_access_key, day, region), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope},"
        f" SignedHeaders={';'.join(names)}, Signature={signature}"
    )


@dataclass
class SignedRequests:
    """The requests of one bucket. Every method raises :class:`Unexpected` for any answer
    but the expected ones; connections are kept alive, one per thread at a time."""

    bucket: str
    endpoint: str
    region: str
    creds: Credentials = field(repr=False)
    style: str = "auto"
    cafile: str | None = None  # the CA bundle to verify TLS with; None: not verified
    _idle: queue.SimpleQueue[http.client.HTTPConnection] = field(
        default_factory=queue.SimpleQueue, init=False, repr=False
    )

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        self._tls = parts.scheme == "https"
        host = parts.hostname or ""
        virtual = virtual_hosted(self.bucket, host, self.style)
        if virtual is None:
            raise Unexpected("addressing")
        self._virtual = virtual
        self._host = (f"{self.bucket}." if self._virtual else "") + host
        self._port = parts.port
        default = 443 if self._tls else 80
        self._netloc = self._host if self._port in (None, default) else f"{self._host}:{self._port}"
        self._pid = os.getpid()  # whose kept connections these are
        self._context: ssl.SSLContext | None = None
        if self._tls:
            self._context = ssl.create_default_context(cafile=self.cafile)
            if self.cafile is None:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    def _path(self, key: str | None) -> str:
        """The path botocore sends: the key quoted, after the bucket in path style."""
        if key is None:
            return "/" if self._virtual else f"/{self.bucket}"
        return ("" if self._virtual else f"/{self.bucket}") + "/" + quote(key, safe="/~")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._pid != os.getpid():
            # A forked child never takes its parent's sockets: both would read one stream.
            self._idle, self._pid = queue.SimpleQueue(), os.getpid()
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            pass
        made: http.client.HTTPConnection
        if self._context is not None:
            made = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT, context=self._context
            )
        else:
            made = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
        made.connect()
        if made.sock is not None:
            made.sock.settimeout(READ_TIMEOUT)
            # Headers and body go in two sends: without this, Nagle's algorithm holds the
            # body's last segment for the server's delayed ACK (urllib3 sets it too).
            made.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return made, False

    def prepare(
        self,
        method: str,
        key: str | None,
        query: Query,
        extra: Mapping[str, str],
        now: datetime.datetime | None = None,
    ) -> tuple[str, str, dict[str, str]]:
        """The host, path (with its query) and signed headers of a request."""
        path = self._path(key)
        when = now or datetime.datetime.now(datetime.UTC)
        headers = {
            "host": self._netloc,
            "x-amz-content-sha256": UNSIGNED,
            "x-amz-date": when.strftime("%Y%m%dT%H%M%SZ"),
            **extra,
        }
        if self.creds.session_token:
            headers["x-amz-security-token"] = self.creds.session_token
        headers["authorization"] = authorization(
            method, path, query, headers, self.creds, self.region
        )
        if query:
            path += "?" + "&".join(
                _encode(k) if v is None else f"{_encode(k)}={_encode(v)}" for k, v in query
            )
        return self._netloc, path, headers

    def request(
        self,
        method: str,
        key: str | None,
        query: Query,
        extra: dict[str, str],
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """The status, headers and body of one signed request (a kept-alive connection
        the server closed meanwhile is replaced once: a write sent again is one botocore
        would retry too, conditional as the first)."""
        _, path, headers = self.prepare(method, key, query, extra)
        for attempt in (1, 2):
            try:
                connection, reused = self._connection()
            except (OSError, http.client.HTTPException) as error:
                raise Unexpected(error.__class__.__name__) from None
            try:
                connection.request(method, path, body=body, headers=headers)
                answer = connection.getresponse()
                body = answer.read(BODY_LIMIT + 1)
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: one fresh try
                raise Unexpected(error.__class__.__name__) from None
            if len(body) > BODY_LIMIT or answer.will_close or not answer.isclosed():
                connection.close()
            else:
                self._idle.put(connection)
            if len(body) > BODY_LIMIT:
                raise Unexpected("answer too large")
            return answer.status, answer.headers, body
        raise AssertionError("unreachable")

    def head(self, key: str) -> RemoteObject | None:
        status, headers, _ = self.request("HEAD", key, [], {"x-amz-checksum-mode": "ENABLED"})
        if status == 404:
            return None
        length = headers.get("Content-Length", "")
        if status != 200 or not length.isdigit():
            raise Unexpected(f"HEAD {status}")
        names = {name.lower() for name in headers}
        return RemoteObject(
            key,
            int(length),
            (headers.get("ETag") or "").strip('"'),
            headers.get("x-amz-checksum-crc32"),
            headers.get("x-amz-checksum-sha256"),
            checksummed=any(name.startswith("x-amz-checksum-") for name in names),
        )

    def get(self, key: str) -> bytes | None:
        status, _, body = self.request("GET", key, [], {})
        if status == 200:
            return body
        if status == 404 and _error_code(body) == "NoSuchKey":
            return None
        raise Unexpected(f"GET {status}")

    def put(self, key: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str | None]:
        """PutObject with ``headers`` (named in lower case, as botocore signs them), the
        body unsigned as botocore sends it (its SHA-256 is in a signed header, which the
        store checks): the answer's ETag and ChecksumSHA256, as botocore gives them. A
        refused condition is :class:`Conflict`."""
        status, answer, text = self.request("PUT", key, [], dict(headers), body)
        if status == 200:
            return _written(answer)
        if status in (409, 412) and _error_code(text) in CONDITION_REFUSED:
            raise Conflict(key)
        raise Unexpected(f"PUT {status}")

    def delete(self, key: str) -> None:
        status, _, _ = self.request("DELETE", key, [], {})
        if status not in (200, 204):
            raise Unexpected(f"DELETE {status}")

    def create_multipart(self, key: str, headers: Mapping[str, str]) -> str:
        """CreateMultipartUpload: the upload's id."""
        status, _, text = self.request("POST", key, [("uploads", None)], dict(headers))
        root = _parse(text) if status == 200 else None
        upload_id = _field(root, "InitiateMultipartUploadResult", "UploadId")
        if not upload_id:
            raise Unexpected(f"POST ?uploads {status}")
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str | None]:
        """UploadPart: the answer's ETag and ChecksumSHA256, as botocore gives them."""
        query: Query = [("uploadId", upload_id), ("partNumber", str(number))]
        status, answer, _ = self.request("PUT", key, query, dict(headers), body)
        if status != 200:
            raise Unexpected(f"PUT part {status}")
        return _written(answer)

    def refuses_part(
        self, key: str, upload_id: str, number: int, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """UploadPart of a body that is not its checksum: True if the store refuses it as
        S3 does (400 BadDigest), False if it takes it."""
        query: Query = [("uploadId", upload_id), ("partNumber", str(number))]
        status, _, text = self.request("PUT", key, query, dict(headers), body)
        if status == 400 and _error_code(text) == BAD_DIGEST:
            return True
        if status == 200:
            return False
        raise Unexpected(f"PUT part {status}")

    def complete_multipart(
        self, key: str, upload_id: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """CompleteMultipartUpload with ``body`` (botocore's XML): the result's ETag and
        ChecksumSHA256. S3 may answer 200 with an error in the body: that is not done."""
        status, _, text = self.request("POST", key, [("uploadId", upload_id)], dict(headers), body)
        if status in (409, 412) and _error_code(text) in CONDITION_REFUSED:
            raise Conflict(key)
        root = _parse(text) if status == 200 else None
        etag = _field(root, "CompleteMultipartUploadResult", "ETag")
        if not etag:
            raise Unexpected(f"POST ?uploadId {status}")
        checksum = _field(root, "CompleteMultipartUploadResult", "ChecksumSHA256")
        return {"ETag": etag, **({"ChecksumSHA256": checksum} if checksum else {})}

    def abort_multipart(self, key: str, upload_id: str) -> None:
        status, _, _ = self.request("DELETE", key, [("uploadId", upload_id)], {})
        if status not in (200, 204):
            raise Unexpected(f"DELETE ?uploadId {status}")

    def list_multipart(self, prefix: str) -> list[dict[str, str]]:
        """ListMultipartUploads, its first page as botocore's one call reads it: each
        upload's Key, UploadId, Initiated and ChecksumAlgorithm."""
        status, _, text = self.request("GET", None, [("uploads", None), ("prefix", prefix)], {})
        root = _parse(text) if status == 200 else None
        if root is None or _local(root.tag) != "ListMultipartUploadsResult":
            raise Unexpected(f"GET ?uploads {status}")
        if any(_local(e.tag) == "EncodingType" for e in root):
            raise Unexpected("encoded keys")  # never asked for; botocore's to decode
        return [
            {_local(e.tag): e.text or "" for e in upload}
            for upload in root
            if _local(upload.tag) == "Upload"
        ]

    def list(self, prefix: str) -> dict[str, RemoteObject]:
        found: dict[str, RemoteObject] = {}
        token: str | None = None
        while True:
            query: Query = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url")]
            if token is not None:
                query.append(("continuation-token", token))
            status, _, body = self.request("GET", None, query, {})
            if status != 200:
                raise Unexpected(f"LIST {status}")
            page, token = _listing(body)
            found |= page
            if token is None:
                return found


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse(body: bytes) -> ElementTree.Element:
    try:
        # botocore parses these answers with the same parser; expat (2.4 and later) bounds
        # entity expansion, resolves no external entity, and the body is bounded.
        return ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        raise Unexpected("not XML") from None


def _error_code(body: bytes) -> str | None:
    try:
        root = _parse(body)
    except Unexpected:
        return None
    return next((e.text for e in root if _local(e.tag) == "Code"), None)


def _written(answer: http.client.HTTPMessage) -> dict[str, str | None]:
    """What botocore's answer to a PUT holds that a write is confirmed by."""
    return {"ETag": answer.get("ETag"), "ChecksumSHA256": answer.get("x-amz-checksum-sha256")}


def _field(root: ElementTree.Element | None, tag: str, name: str) -> str | None:
    """The text of ``name`` in a document whose root is ``tag``; None otherwise."""
    if root is None or _local(root.tag) != tag:
        return None
    return next((e.text for e in root if _local(e.tag) == name), None)


def _listing(body: bytes) -> tuple[dict[str, RemoteObject], str | None]:
    """One ListObjectsV2 page: its objects, and the token of the next page (None: last)."""
    root = _parse(body)
    if _local(root.tag) != "ListBucketResult":
        raise Unexpected("not a listing")
    fields = {_local(e.tag): e.text or "" for e in root if _local(e.tag) != "Contents"}
    encoded = fields.get("EncodingType") == "url"
    page = {}
    for item in root:
        if _local(item.tag) != "Contents":
            continue
        values = {_local(e.tag): e.text or "" for e in item}
        key = unquote_plus(values.get("Key", "")) if encoded else values.get("Key", "")
        size = values.get("Size", "")
        if not key or not size.isdigit():
            raise Unexpected("listing entry without key or size")
        modified = values.get("LastModified")
        try:
            when = (
                datetime.datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
                if modified
                else None
            )
        except ValueError:
            raise Unexpected("listing date") from None
        page[key] = RemoteObject(key, int(size), values.get("ETag", "").strip('"'), modified=when)
    if fields.get("IsTruncated", "false").lower() != "true":
        return page, None
    token = fields.get("NextContinuationToken")
    if not token:
        raise Unexpected("truncated listing without a token")
    return page, token


def signed_requests(
    bucket: str,
    endpoint: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    style: str,
    verify_tls: bool,
    env: Mapping[str, str] | None = None,
) -> SignedRequests | None:
    """The fast path for this bucket, or None where botocore's requests could differ from
    its own (see the module's docstring)."""
    env = os.environ if env is None else env
    if not endpoint:
        return None  # AWS itself: regions, redirects, FIPS and dual-stack are botocore's
    parts = urlsplit(endpoint)
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        return None
    if ":" in (parts.hostname or ":"):  # IPv6: left to botocore
        return None
    if RESERVED_SUFFIX.search(bucket):  # S3 Express (--x-s3): botocore signs a session
        return None
    creds = credentials(access_key_id, secret_access_key, env)
    try:
        home = Path.home()
    except RuntimeError:  # no home at all: botocore's to judge
        return None
    if creds is None or botocore_reads_more(env, home):
        return None
    cafile = None
    if parts.scheme == "https" and verify_tls:
        cafile = ca_bundle(env)
        if cafile is None:
            return None
    try:
        return SignedRequests(bucket, endpoint, region, creds, style, cafile)
    except (Unexpected, OSError, ValueError):
        return None
