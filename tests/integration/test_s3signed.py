"""The fast path against a real S3 server: the same answers as botocore's, the same objects
stored, botocore taking over at the first answer it does not expect, and publishes that
never import botocore."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devkit.s3 import S3Server, versitygw_server
from pakman.digest import MULTIPART_THRESHOLD
from pakman.errors import PublishError
from pakman.storage.multipart import Multipart
from pakman.storage.objects import Condition, Conflict, bytes_object, hash_file
from pakman.storage.s3 import S3Store
from pakman.storage.s3signed import SignedRequests
from tests.support.deployment import Built
from tests.support.instellar import SHA

KEYS = ["p/a b.apk", "p/plus+sign.apk", "p/ünï/cödé.apk", "p/tilde~x", "p/q?x=1&y=%2F", "p/d/x"]


def store(server: S3Server, bucket: str, **kw: Any) -> S3Store:
    given: dict[str, Any] = {
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
    }
    return S3Store(bucket, server.endpoint, "us-east-1", **(given | kw))


def botocores(server: S3Server, bucket: str) -> S3Store:
    only = store(server, bucket)
    only._fast = False
    return only


def test_the_same_answers_as_botocore(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    for key in KEYS:
        client.put_object(
            Bucket=bucket, Key=key, Body=key.encode() * 40, ChecksumAlgorithm="SHA256"
        )
    client.put_object(Bucket=bucket, Key="p/plain", Body=b"no checksum asked")
    client.put_object(Bucket=bucket, Key="elsewhere", Body=b"x", ChecksumAlgorithm="SHA256")
    # A multipart object: the store keeps the composite SHA-256 of its parts.
    upload = client.create_multipart_upload(Bucket=bucket, Key="p/big", ChecksumAlgorithm="SHA256")
    parts = []
    for number, body in enumerate((b"a" * 5 * 1024 * 1024, b"tail"), start=1):
        sent = client.upload_part(
            Bucket=bucket, Key="p/big", UploadId=upload["UploadId"], PartNumber=number,
            Body=body, ChecksumAlgorithm="SHA256",
        )  # fmt: skip
        parts.append(
            {"PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": sent["ChecksumSHA256"]}
        )
    client.complete_multipart_upload(
        Bucket=bucket, Key="p/big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    fast, slow = store(s3_server, bucket), botocores(s3_server, bucket)
    listed = fast.list("p/", checksums=True)
    assert isinstance(fast._fast, SignedRequests)  # it took the fast path and stayed on it
    assert listed == slow.list("p/", checksums=True)
    assert set(listed) == {*KEYS, "p/plain", "p/big"}
    assert listed["p/big"].sha256 is not None
    assert listed["p/big"].sha256.endswith("-2")
    assert listed["p/plain"].sha256 is None
    for key in [*KEYS, "p/missing"]:
        assert fast.head(key) == slow.head(key), key
        assert fast.get(key) == slow.get(key), key
    assert isinstance(fast._fast, SignedRequests)


def test_a_listing_of_many_pages(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    for number in range(1005):  # a page holds 1,000
        client.put_object(Bucket=bucket, Key=f"many/{number:05}", Body=b"")
    fast = store(s3_server, bucket)
    assert fast.list("many/") == botocores(s3_server, bucket).list("many/")
    assert len(fast.list("many/")) == 1005
    assert isinstance(fast._fast, SignedRequests)


def test_botocore_takes_over_at_an_answer_it_does_not_expect(
    s3_server: S3Server, bucket: str
) -> None:
    """A refused signature or a missing bucket: botocore's request reports it, as before,
    redacted; the fast path is off for the rest of the run."""
    wrong = store(s3_server, bucket, secret_access_key="not-the-secret-at-all")
    with pytest.raises(PublishError) as refused:
        wrong.list("p/")
    assert "SignatureDoesNotMatch" in str(refused.value)
    assert "not-the-secret-at-all" not in str(refused.value)
    assert wrong._fast is False
    absent = store(s3_server, "no-such-bucket-here")
    with pytest.raises(PublishError, match="does not exist"):
        absent.get("k")  # 404 NoSuchBucket, not NoSuchKey
    assert absent._fast is False


def test_a_put_stores_what_botocores_put_stores(s3_server: S3Server, bucket: str) -> None:
    """The store checks and keeps the SHA-256 sent, the type, caching and metadata."""
    fast, slow = store(s3_server, bucket), botocores(s3_server, bucket)
    client = s3_server.client()
    for key in KEYS:
        for writer, prefix in ((fast, "fast/"), (slow, "slow/")):
            local = bytes_object(prefix + key, key.encode() * 30, cache_control="no-cache")
            assert writer.put(local) == local.etag
    for key in KEYS:
        ours, theirs = (
            client.head_object(Bucket=bucket, Key=prefix + key, ChecksumMode="ENABLED")
            for prefix in ("fast/", "slow/")
        )
        for field in ("ChecksumSHA256", "ETag", "ContentType", "CacheControl", "Metadata"):
            assert ours.get(field) == theirs.get(field), (key, field)
        assert ours["ChecksumSHA256"] is not None
    fast.delete("fast/" + KEYS[0])
    fast.delete("fast/never-there")
    assert fast.head("fast/" + KEYS[0]) is None
    assert isinstance(fast._fast, SignedRequests)  # every request took the fast path
    assert fast._client is None  # and botocore's client was never made


def test_a_refused_condition_is_a_conflict_and_overwrites_nothing(
    s3_server: S3Server, bucket: str
) -> None:
    fast = store(s3_server, bucket)
    first = bytes_object("p/held", b"first")
    etag = fast.put(first, only_if=Condition(None))
    for condition in (Condition(None), Condition("0123456789abcdef0123456789abcdef")):
        with pytest.raises(Conflict):
            fast.put(bytes_object("p/held", b"second"), only_if=condition)
    assert fast.get("p/held") == b"first"
    assert fast.put(bytes_object("p/held", b"third"), only_if=Condition(etag))
    assert fast.get("p/held") == b"third"
    assert isinstance(fast._fast, SignedRequests)  # a refusal is an answer it knows
    assert fast._client is None


def test_botocore_takes_over_a_write_it_does_not_expect(s3_server: S3Server, bucket: str) -> None:
    wrong = store(s3_server, bucket, secret_access_key="not-the-secret-at-all")
    with pytest.raises(PublishError) as refused:
        wrong.put(bytes_object("p/refused", b"body"))
    assert "SignatureDoesNotMatch" in str(refused.value)
    assert "not-the-secret-at-all" not in str(refused.value)
    assert wrong._fast is False
    assert store(s3_server, bucket).head("p/refused") is None


@pytest.fixture(scope="module")
def keeping_alive() -> Iterator[S3Server]:
    with versitygw_server(keep_alive=True) as server:
        server.client().create_bucket(Bucket="kept")
        yield server


def test_connections_are_kept_and_one_the_server_closed_is_replaced(
    keeping_alive: S3Server,
) -> None:
    keeping_alive.client().put_object(Bucket="kept", Key="k", Body=b"v")
    fast = store(keeping_alive, "kept")
    assert fast.get("k") == b"v"
    reads = fast._fast
    assert isinstance(reads, SignedRequests)
    idle = reads._idle.get_nowait()  # kept for the next request
    assert idle.sock is not None
    idle.sock.close()  # as a server does with a connection idle too long
    reads._idle.put(idle)
    assert fast.get("k") == b"v"
    assert fast._fast is reads


def test_publish_and_republish_of_small_objects_never_import_botocore(
    s3_server: S3Server, bucket: str, deployment_files: Built, tmp_path: Path
) -> None:
    """Every process of the run (the children reading the archive and storage too)
    imports nothing of botocore: on a first publish whose objects each go in one PUT, and
    when storage already holds every object."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    args = [
        "publish", str(deployment_files.packages), "--archive", str(deployment_files.archive),
        "--key", str(deployment_files.public_key), "--repository", "acme/app", "--sha", SHA,
        "--bucket", bucket, "--endpoint", s3_server.endpoint,
    ]  # fmt: skip

    def publish() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "pakman.cli", *args],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    first = publish()
    assert first.returncode == 0, first.stderr[-800:]
    assert "uploaded 0" not in first.stdout + first.stderr
    again = publish()
    assert again.returncode == 0, again.stderr[-800:]
    assert "uploaded 0" in again.stdout + again.stderr or "nothing" in again.stdout.lower()
    for run in (first, again):
        assert "pakman.storage.s3signed" in run.stderr  # what -X importtime shows
        imported = [line for line in run.stderr.splitlines() if "botocore" in line]
        assert imported == []


def test_a_forked_child_never_takes_its_parents_connections(keeping_alive: S3Server) -> None:
    keeping_alive.client().put_object(Bucket="kept", Key="forked", Body=b"parent and child")
    fast = store(keeping_alive, "kept")
    assert fast.get("forked") == b"parent and child"
    reads = fast._fast
    assert isinstance(reads, SignedRequests)
    kept = reads._idle.get_nowait()
    reads._idle.put(kept)
    pid = os.fork()
    if pid == 0:  # the child: its own connection, never the parent's
        code = 1
        try:
            ok = fast.get("forked") == b"parent and child"
            mine = reads._idle.get_nowait()
            code = 0 if ok and mine is not kept else 2
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert fast.get("forked") == b"parent and child"
    assert reads._idle.get_nowait() is kept  # the parent's connection, still its own


def test_cold_concurrent_listings_in_a_loop_agree_with_botocore(keeping_alive: S3Server) -> None:
    """Eight threads share a cold pool of kept connections: run after run, every answer is
    botocore's, and the fast path never hands over."""
    client = keeping_alive.client()
    for number in range(120):
        client.put_object(
            Bucket="kept", Key=f"loop/{number:03}", Body=b"%d" % number, ChecksumAlgorithm="SHA256"
        )
    expected = botocores(keeping_alive, "kept").list("loop/", checksums=True)
    for _ in range(25):
        fast = store(keeping_alive, "kept", concurrency=8)
        assert fast.list("loop/", checksums=True) == expected
        assert isinstance(fast._fast, SignedRequests)


def test_cold_concurrent_puts_in_a_loop_store_every_body(keeping_alive: S3Server) -> None:
    """Eight threads put at once through a cold pool of kept connections, run after run:
    the store holds each body under its own key with its own SHA-256, conditional writes
    that race each other let exactly one win, and the fast path never hands over."""
    for run in range(15):
        fast = store(keeping_alive, "kept", concurrency=8)
        objects = [bytes_object(f"puts/{run}/{n:02}", os.urandom(3000 + n)) for n in range(40)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            etags = list(pool.map(fast.put, objects))
        assert etags == [local.etag for local in objects]

        def claim(n: int, fast: S3Store = fast, run: int = run) -> bool:
            try:
                fast.put(bytes_object(f"puts/{run}/race", b"%d" % n), only_if=Condition(None))
            except Conflict:
                return False
            return True

        with ThreadPoolExecutor(max_workers=8) as pool:
            won = list(pool.map(claim, range(8)))
        assert won.count(True) == 1
        assert fast.get(f"puts/{run}/race") == b"%d" % won.index(True)
        held = fast.list(f"puts/{run}/", checksums=True)
        for local in objects:
            assert held[local.key].sha256 == local.sha256_b64
        assert isinstance(fast._fast, SignedRequests)
        assert fast._client is None


def test_a_multipart_upload_goes_without_botocore(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Create, parts, complete: the store keeps the composite SHA-256 of the verified
    parts, a refused condition on completing is a conflict, and botocore is never made."""
    big = tmp_path / "big.zip"
    big.write_bytes(os.urandom(MULTIPART_THRESHOLD + 1000))
    local = hash_file(big, "archives/big.zip")
    fast = store(s3_server, bucket)
    with ThreadPoolExecutor(max_workers=4) as pool:
        etag = fast.stage(local, pool, only_if=Condition(None)).commit()
        assert etag is not None
        assert etag.endswith("-5")
        held = fast.head(local.key)
        assert held is not None
        assert held.sha256 == local.composite_sha256()
        assert fast.matches(local, held)
        with pytest.raises(Conflict):
            fast.stage(local, pool, only_if=Condition(None)).commit()
    assert isinstance(fast._fast, SignedRequests)
    assert fast._client is None
    client = s3_server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted


@pytest.mark.parametrize("checking", [True, False], ids=["store-checks", "moto-checks-nothing"])
def test_parts_are_hashed_here_only_where_the_store_does_not_check_them(
    request: pytest.FixtureRequest, tmp_path: Path, checking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One probe part per run, sent with a wrong SHA-256: versitygw refuses it (BadDigest,
    as S3 does), and its parts then go with the verified SHA-256 for it to check, unhashed
    here; moto takes it, and every part is hashed here first. Either way the object holds
    exactly the file, without the probe part, and no upload is left behind."""
    import hashlib
    import types

    server: S3Server = request.getfixturevalue("s3_server" if checking else "moto")
    bucket = f"probed-{int(checking)}"
    server.client().create_bucket(Bucket=bucket)
    big = tmp_path / "big.apk"
    data = os.urandom(MULTIPART_THRESHOLD + 1000)
    big.write_bytes(data)
    local = hash_file(big, "deployments/acme/app/x/big.apk")
    hashed: list[int] = []

    def counting(body: bytes = b"") -> Any:
        hashed.append(len(body))
        return hashlib.sha256(body)

    # Only multipart's hashing: signing requests hashes too.
    here = types.SimpleNamespace(sha256=counting, md5=hashlib.md5)
    monkeypatch.setattr("pakman.storage.multipart.hashlib", here)
    fast = store(server, bucket)
    with ThreadPoolExecutor(max_workers=4) as pool:
        staged = fast.stage(local, pool)
        assert staged.commit() is not None
    assert fast._checks_parts is checking
    assert len(hashed) == (0 if checking else len(local.part_sha256))
    client = server.client()
    assert client.get_object(Bucket=bucket, Key=local.key)["Body"].read() == data
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    if checking:
        held = fast.head(local.key)
        assert held is not None
        assert held.sha256 == local.composite_sha256()
        assert isinstance(fast._fast, SignedRequests)  # the refused probe is no surprise


def test_cold_concurrent_multipart_uploads_in_a_loop_probe_once(
    keeping_alive: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three big uploads staged at once on a cold store, run after run: the store is
    probed exactly once, every upload then knows it checks its parts, each object holds
    the composite SHA-256 of the verified parts, and the fast path never hands over."""
    big = tmp_path / "big.apk"
    big.write_bytes(os.urandom(MULTIPART_THRESHOLD + 1000))
    hashed = hash_file(big, "parts/big.apk")
    probes: list[str] = []
    probe = S3Store._refuses_wrong_part

    def counted(self: S3Store, key: str, upload_id: str) -> bool:
        probes.append(key)
        return probe(self, key, upload_id)

    monkeypatch.setattr(S3Store, "_refuses_wrong_part", counted)
    for run in range(6):
        probes.clear()
        fast = store(keeping_alive, "kept", concurrency=8)
        objects = [dataclasses.replace(hashed, key=f"parts/{run}/{n}.apk") for n in range(3)]
        with ThreadPoolExecutor(max_workers=8) as pool, ThreadPoolExecutor(3) as staging:
            staged = list(staging.map(functools.partial(fast.stage, pool=pool), objects))
            assert all(isinstance(s, Multipart) and s.store_checks for s in staged)
            for each in staged:
                each.commit()
        assert len(probes) == 1
        for local in objects:
            held = fast.head(local.key)
            assert held is not None
            assert held.sha256 == local.composite_sha256()
        assert isinstance(fast._fast, SignedRequests)


def test_an_upload_whose_probe_fails_is_aborted(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe is the upload's first request after it is started: when it fails, the
    error is the run's and no unfinished upload of a package is left behind."""
    big = tmp_path / "big.apk"
    big.write_bytes(os.urandom(MULTIPART_THRESHOLD + 1000))
    local = hash_file(big, "deployments/acme/app/x/big.apk")

    def failing(self: S3Store, key: str, upload_id: str) -> bool:
        raise PublishError("storage: the probe failed")

    monkeypatch.setattr(S3Store, "_refuses_wrong_part", failing)
    fast = store(s3_server, bucket)
    with ThreadPoolExecutor(max_workers=4) as pool, pytest.raises(PublishError, match="probe"):
        fast.stage(local, pool)
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
