"""The fast path signs and addresses each request (its reads, and the single PUTs and
DELETEs of a publish) exactly as botocore does (checked against botocore's own requests,
caught before they leave), and is used only where botocore's requests could not differ
from its own."""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.client
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

import botocore.session
import pytest
from botocore.config import Config

from pakman.digest import b64
from pakman.storage import s3signed
from pakman.storage.objects import Condition, Conflict, bytes_object
from pakman.storage.s3 import (
    PROBE_PART,
    S3Store,
    complete_body,
    create_headers,
    put_headers,
)
from pakman.storage.s3signed import Credentials, Query, SignedRequests, Unexpected, signed_requests

KEY_ID = "AKIAFASTPATHTEST0001"
SECRET = "fast-path-secret/Zq8x+T3st"
TOKEN = "session-token-value"
TRICKY = ["p/a b.apk", "p/plus+sign.apk", "p/ünï/cödé.apk", "p/tilde~x", "p/q?x=1&y=%2F", "p/"]


Style = Literal["auto", "path", "virtual"]


class Caught(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


@functools.cache
def botocore_client(endpoint: str, style: str, token: str | None) -> Any:
    """A botocore client as pakman makes one, whose requests are caught before they leave."""
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-3",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        config=Config(
            s3={"addressing_style": cast(Style, style), "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )

    def catch(request: Any, **_: Any) -> None:
        raise Caught(request)

    client.meta.events.register("before-send.s3", catch)
    return client


def botocore_request(endpoint: str, style: str, call: str, token: str | None, **params: Any) -> Any:
    """The request botocore would send for ``call``, caught before it leaves."""
    with pytest.raises(Caught) as caught:
        getattr(botocore_client(endpoint, style, token), call)(**params)
    return caught.value.request


def fast(endpoint: str, style: str, token: str | None) -> SignedRequests:
    creds = Credentials(KEY_ID, SECRET, token)
    return SignedRequests("releases", endpoint, "eu-west-3", creds, style)


CASES = [
    ("head_object", "HEAD", lambda key: ({"Key": key, "ChecksumMode": "ENABLED"}, key, [])),
    ("get_object", "GET", lambda key: ({"Key": key}, key, [])),
    (
        "list_objects_v2",
        "GET",
        lambda key: (
            {"Prefix": key, "ContinuationToken": "tok/+=="},
            None,
            [
                ("list-type", "2"),
                ("prefix", key),
                ("encoding-type", "url"),
                ("continuation-token", "tok/+=="),
            ],
        ),
    ),
]


# Every endpoint and style the fast path takes (virtual at an IP address it leaves).
WHERE = [
    ("http://127.0.0.1:7070", "auto"),
    ("http://127.0.0.1:7070", "path"),
    ("https://s3.example.net", "auto"),
    ("https://s3.example.net", "path"),
    ("https://s3.example.net", "virtual"),
    ("http://localhost:9000", "virtual"),
    ("http://127.0.0.1:7070/", "auto"),  # a trailing slash
    ("https://s3.example.net/", "virtual"),
]


@pytest.mark.parametrize(("endpoint", "style"), WHERE)
@pytest.mark.parametrize("token", [None, TOKEN])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_requests_are_botocores(endpoint: str, style: str, token: str | None, case: Any) -> None:
    call, method, params_for = case
    reads = fast(endpoint, style, token)
    for key in TRICKY:
        params, object_key, query = params_for(key)
        theirs = botocore_request(endpoint, style, call, token, Bucket="releases", **params)
        extra = {"x-amz-checksum-mode": "ENABLED"} if method == "HEAD" else {}
        same_request(theirs, reads, method, object_key, query, extra, token)


def same_request(
    theirs: Any,
    reads: SignedRequests,
    method: str,
    key: str | None,
    query: Query,
    extra: dict[str, str],
    token: str | None,
) -> None:
    """Ours is theirs: method, host, path and query; their signed headers, signed by our
    signer, give their Authorization; ours are the headers they sign, with their values."""
    url = urlsplit(theirs.url)
    date = theirs.headers["X-Amz-Date"].decode()
    now = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    host, target, ours = reads.prepare(method, key, query, extra, now)
    path, _, our_query = target.partition("?")
    assert (theirs.method, url.netloc, url.path) == (method, host, path), key
    assert sorted(parse_qsl(url.query)) == sorted(parse_qsl(our_query)), key
    authorization = theirs.headers["Authorization"].decode()
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {
        name: theirs.headers.get(name, host).decode() if name != "host" else host for name in signed
    }
    assert (
        s3signed.authorization(
            method,
            url.path,
            list(parse_qsl(url.query, keep_blank_values=True)),
            headers,
            Credentials(KEY_ID, SECRET, token),
            "eu-west-3",
        )
        == authorization
    ), key
    # Ours carry every header they sign that is not botocore's own bookkeeping, as theirs.
    mine = {n: v for n, v in headers.items() if not n.startswith("amz-sdk-")}
    assert mine == {n: v for n, v in ours.items() if n != "authorization"}, key


WRITTEN = [
    (bytes_object("p/manifest.json", b"{}", cache_control="no-cache"), None),
    (bytes_object("p/a b.apk", b"apk"), Condition(None)),  # only where none is
    (bytes_object("p/ünï/cödé.apk", b"apk"), Condition("0123456789abcdef")),  # only over it
]


@pytest.mark.parametrize(("endpoint", "style"), WHERE)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_writes_are_botocores(endpoint: str, style: str, token: str | None) -> None:
    """PutObject as :class:`S3Store` asks botocore for it, and DeleteObject."""
    reads = fast(endpoint, style, token)
    store = S3Store("releases", endpoint)
    store._client = botocore_client(endpoint, style, token)
    for local, only_if in WRITTEN:
        assert local.body is not None
        with pytest.raises(Caught) as put:
            store._put_object(local, local.body, only_if)
        same_request(
            put.value.request, reads, "PUT", local.key, [], put_headers(local, only_if), token
        )
        theirs = botocore_request(
            endpoint, style, "delete_object", token, Bucket="releases", Key=local.key
        )
        same_request(theirs, reads, "DELETE", local.key, [], {}, token)


def test_the_secret_is_in_no_header_and_no_repr() -> None:
    reads = fast("http://127.0.0.1:7070", "auto", TOKEN)
    host, target, headers = reads.prepare("HEAD", "p/a.apk", [], {})
    assert SECRET not in repr(reads)
    assert TOKEN not in repr(reads)
    assert all(SECRET not in value for value in (host, target, *headers.values()))


def test_listing_pages_parse_as_botocore_decodes_them() -> None:
    page = (
        b'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        b"<NextContinuationToken>next/1</NextContinuationToken>"
        b"<Contents><Key>p/a+b%2Bc%C3%BC</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag>"
        b"<LastModified>2026-12-03T15:00:00.000Z</LastModified></Contents></ListBucketResult>"
    )
    objects, token = s3signed._listing(page)
    assert token == "next/1"
    [(key, found)] = objects.items()
    assert (key, found.size, found.etag) == ("p/a b+cü", 12, "abc")
    assert found.modified == datetime.datetime(2026, 12, 3, 15, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(
    "body",
    [
        b"<Error><Code>NoSuchBucket</Code></Error>",
        b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
        b"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
        b"<ListBucketResult><Contents><Key>k</Key><Size>1</Size>"
        b"<LastModified>yesterday</LastModified></Contents></ListBucketResult>",
        b"not xml <",
    ],
)
def test_a_listing_it_cannot_read_is_left_to_botocore(body: bytes) -> None:
    with pytest.raises(Unexpected):
        s3signed._listing(body)


GIVEN = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


def made(env: dict[str, str], endpoint: str | None = "http://127.0.0.1:7070", **kw: Any) -> bool:
    args: dict[str, Any] = {"access_key_id": None, "secret_access_key": None} | kw
    return (
        signed_requests(
            "releases",
            endpoint,
            "us-east-1",
            args["access_key_id"],
            args["secret_access_key"],
            "auto",
            True,
            env,
        )
        is not None
    )


def test_it_runs_only_where_botocores_requests_are_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert made(GIVEN)
    assert made({}, access_key_id=KEY_ID, secret_access_key=SECRET)
    assert not made({})  # botocore's search: profiles, roles
    assert not made({}, access_key_id=KEY_ID)
    assert not made(GIVEN, endpoint=None)  # AWS itself
    assert not made(GIVEN, endpoint="http://user:pw@127.0.0.1:7070")
    assert not made(GIVEN, endpoint="http://127.0.0.1:7070/base")
    assert not made(GIVEN, endpoint="http://[::1]:7070")
    assert not made(GIVEN | {"AWS_PROFILE": "ci"})
    assert not made(GIVEN | {"https_proxy": "http://proxy:3128"})
    assert not made(GIVEN | {"AWS_USE_FIPS_ENDPOINT": "true"})
    assert made(GIVEN | {"NO_PROXY": "*", "AWS_CA_BUNDLE": "/etc/ssl/certs/ca.crt"})
    config = tmp_path / ".aws" / "config"
    config.parent.mkdir()
    config.write_text("[default]\n")
    assert not made(GIVEN)
    assert not made(GIVEN | {"AWS_CONFIG_FILE": str(config)})


def test_a_session_token_comes_only_with_keys_from_the_environment() -> None:
    env = GIVEN | {"AWS_SESSION_TOKEN": TOKEN}
    assert s3signed.credentials(None, None, env) == Credentials(KEY_ID, SECRET, TOKEN)
    # Keys given as options: botocore then signs with no token.
    assert s3signed.credentials("other", "pair", env) == Credentials("other", "pair", None)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:7070", "https://s3.example.net"])
def test_where_botocores_addressing_rules_go_further_it_is_left_to_them(endpoint: str) -> None:
    """Virtual-hosted addressing of a dotted bucket, or at an IP address, follows rules of
    botocore's own (path style for one, a dotted host for the other): not replicated."""
    env = GIVEN
    for bucket in ("rel.eases", "releases"):
        made = signed_requests(bucket, endpoint, "us-east-1", None, None, "virtual", True, env)
        expected = bucket == "releases" and "example" in endpoint
        assert (made is not None) == expected, (bucket, endpoint)


def test_tls_is_verified_with_the_bundle_botocore_would_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no AWS config file
    both = {"AWS_CA_BUNDLE": "/ca/aws.pem", "REQUESTS_CA_BUNDLE": "/ca/requests.pem"}
    assert s3signed.ca_bundle(both) == "/ca/aws.pem"
    assert s3signed.ca_bundle({"REQUESTS_CA_BUNDLE": "/ca/requests.pem"}) == "/ca/requests.pem"
    default = s3signed.ca_bundle({})
    assert default is not None
    assert Path(default).is_file()
    # A blank name botocore refuses with its own error: the fast path stands aside.
    https = "https://s3.example.net"
    blank = GIVEN | {"AWS_CA_BUNDLE": " "}
    assert signed_requests("releases", https, "us-east-1", None, None, "auto", True, blank) is None
    # Not verifying: no bundle is needed.
    assert signed_requests("releases", https, "us-east-1", None, None, "auto", False, blank)


def test_an_aws_folder_it_cannot_read_leaves_the_reads_to_botocore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file it cannot see for want of permission may exist: botocore decides."""
    blocked = tmp_path / ".aws"
    blocked.mkdir()

    def refuse(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "exists", refuse)
    assert s3signed.botocore_reads_more({}, tmp_path)


@pytest.mark.parametrize(
    "bucket", ["abc--x-s3", "abc--usw2-az1--x-s3", "abc--xa-s3", "abc--op-s3", "abc-s3alias"]
)
def test_special_buckets_are_botocores_or_addressed_as_botocore_does(bucket: str) -> None:
    """botocore signs an S3 Express session for --x-s3 buckets even at an endpoint given:
    such names are left to it; any other is addressed as botocore addresses it."""
    endpoint = "http://127.0.0.1:7070"
    made = signed_requests(bucket, endpoint, "eu-west-3", KEY_ID, SECRET, "auto", True, {})
    caught = botocore_request(endpoint, "auto", "head_object", None, Bucket=bucket, Key="k")
    theirs = urlsplit(caught.url)
    if theirs.path != f"/{bucket}/k":  # botocore does something else (a session): left to it
        assert made is None
    elif made is not None:
        assert made.prepare("HEAD", "k", [], {})[1] == theirs.path


def caught(call: Any) -> Any:
    with pytest.raises(Caught) as got:
        call()
    return got.value.request


PARTS = [
    {"ETag": '"0cc175b9c0f1b6a831c399e269772661"', "PartNumber": 1, "ChecksumSHA256": "c1+/="},
    {"ETag": '"a&b<c>"', "PartNumber": 2, "ChecksumSHA256": "c2=="},
]


@pytest.mark.parametrize(("endpoint", "style"), WHERE)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_multipart_requests_are_botocores(endpoint: str, style: str, token: str | None) -> None:
    """Create, UploadPart, Complete (its XML byte for byte), Abort and the listing of
    unfinished uploads, as :class:`S3Store` asks botocore for them."""
    reads = fast(endpoint, style, token)
    store = S3Store("releases", endpoint)
    store._fast = False
    store._client = botocore_client(endpoint, style, token)
    local = bytes_object("archives/ab/packages ü.zip", b"zip")
    upload = "2~upload/id+=="
    theirs = caught(lambda: store._start_multipart(local, resumable=False))
    same_request(
        theirs, reads, "POST", local.key, [("uploads", None)], create_headers(local), token
    )
    theirs = caught(lambda: store.upload_part(local.key, upload, 7, b"part", "c7=="))
    headers = {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": "c7=="}
    query: Query = [("uploadId", upload), ("partNumber", "7")]
    same_request(theirs, reads, "PUT", local.key, query, headers, token)
    theirs = caught(lambda: store._refuses_wrong_part(local.key, upload))
    wrong = b64(hashlib.sha256(b"\1").digest())
    headers = {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": wrong}
    query = [("uploadId", upload), ("partNumber", str(PROBE_PART))]
    same_request(theirs, reads, "PUT", local.key, query, headers, token)
    assert theirs.body.read() == b"\0"  # botocore streams it
    conditions: list[tuple[Condition | None, dict[str, str]]] = [
        (None, {}),
        (Condition(None), {"if-none-match": "*"}),
        (Condition("0cc175b9"), {"if-match": "0cc175b9"}),
    ]
    for only_if, condition in conditions:
        theirs = caught(lambda o=only_if: store.complete_multipart(local.key, upload, PARTS, o))
        same_request(theirs, reads, "POST", local.key, [("uploadId", upload)], condition, token)
        assert theirs.body == complete_body(PARTS)
    theirs = caught(lambda: store.abort_multipart(local.key, upload))
    same_request(theirs, reads, "DELETE", local.key, [("uploadId", upload)], {}, token)
    theirs = caught(lambda: store._unfinished(local.key))
    same_request(theirs, reads, "GET", None, [("uploads", None), ("prefix", local.key)], {}, token)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"<CompleteMultipartUploadResult><ETag>&quot;e-2&quot;</ETag>"
              b"<ChecksumSHA256>c=-2</ChecksumSHA256></CompleteMultipartUploadResult>",
         {"ETag": '"e-2"', "ChecksumSHA256": "c=-2"}),
        (200, b"<Error><Code>InternalError</Code></Error>", Unexpected),  # S3 does this
        (200, b"<CompleteMultipartUploadResult></CompleteMultipartUploadResult>", Unexpected),
        (412, b"<Error><Code>PreconditionFailed</Code></Error>", Conflict),
        (409, b"<Error><Code>ConditionalRequestConflict</Code></Error>", Conflict),
        (409, b"<Error><Code>OperationAborted</Code></Error>", Unexpected),
        (500, b"", Unexpected),
    ],
)  # fmt: skip
def test_a_completion_is_done_only_when_its_answer_says_so(
    status: int, body: bytes, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 with an error inside is not done; a refused condition is a conflict."""
    reads = fast("http://127.0.0.1:7070", "path", None)
    answer = (status, http.client.HTTPMessage(), body)
    monkeypatch.setattr(SignedRequests, "request", lambda *_, **__: answer)
    if isinstance(expected, dict):
        assert reads.complete_multipart("k", "u", b"<x/>", {}) == expected
    else:
        with pytest.raises(expected):
            reads.complete_multipart("k", "u", b"<x/>", {})


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b"<Error><Code>BadDigest</Code></Error>", True),
        (200, b"", False),
        (400, b"<Error><Code>InvalidArgument</Code></Error>", Unexpected),
        (403, b"<Error><Code>AccessDenied</Code></Error>", Unexpected),
    ],
)
def test_a_probe_part_tells_a_store_that_checks_from_one_that_does_not(
    status: int, body: bytes, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused as S3 refuses a body that is not its checksum: the store checks. Taken: it
    does not. Anything else is left to botocore."""
    reads = fast("http://127.0.0.1:7070", "path", None)
    answer = (status, http.client.HTTPMessage(), body)
    monkeypatch.setattr(SignedRequests, "request", lambda *_, **__: answer)
    if isinstance(expected, bool):
        assert reads.refuses_part("k", "u", PROBE_PART, b"\0", {}) is expected
    else:
        with pytest.raises(expected):
            reads.refuses_part("k", "u", PROBE_PART, b"\0", {})
