from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.ports import free_port
from devkit.s3 import S3Server
from pakman import pipeline
from pakman.errors import ConfigError, PublishError
from pakman.publish.deployment import Deployment
from pakman.storage.objects import LocalObject, hash_file
from pakman.storage.options import StoreOptions
from pakman.storage.s3 import S3Store
from pakman.trust import Trust, trust_files
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built, build_deployment, publish_args
from tests.support.faults import FaultProxy
from tests.support.hostile import KEY
from tests.support.http import answer, http_server, trickle
from tests.support.instellar import SHA
from tests.unit.test_publish import DEPLOYMENT, PREFIX, publish

SECRET_ID = "AKIAPAKMANTESTSECRETID"
SECRET_KEY = "pakman-test-SECRET-key-0123456789abcdefABCDEF"


def store_for(server: S3Server, bucket: str, endpoint: str | None = None, **kw: Any) -> S3Store:
    return S3Store(
        bucket=bucket,
        endpoint=endpoint or server.endpoint,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        **kw,
    )


class Recording(S3Store):
    """The real S3 store, remembering the order of its PUTs and DELETEs."""

    order: list[str]

    def put(self, local: LocalObject, progress: Any = None, **kw: Any) -> str:
        etag = super().put(local, progress, **kw)
        self.order.append(local.key)
        return etag

    def delete(self, key: str) -> None:
        super().delete(key)
        self.order.append(f"DELETE {key}")


def recording(server: S3Server, bucket: str) -> Recording:
    store = Recording(
        bucket=bucket,
        endpoint=server.endpoint,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )
    store.order = []
    return store


def objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    client = server.client()
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing
    }


def cli_args(built: Built, *extra: str, repository: str = "acme/app") -> list[str]:
    """`pakman publish` of a built tree: the arguments every CLI test shares."""
    return [
        "publish", str(built.packages), "--archive", str(built.archive),
        "--repository", repository, "--sha", SHA, *extra,
    ]  # fmt: skip


def assert_complete(server: S3Server, bucket: str, built: Built) -> dict[str, Any]:
    """Every object the manifest lists is present with its size and SHA-256."""
    stored = objects(server, bucket)
    manifest = json.loads(stored[PREFIX + "manifest.json"])
    listed = [*manifest["objects"], manifest["archive"]]
    assert len(manifest["objects"]) == built.files
    for entry in listed:
        data = stored[entry["key"]]
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert set(stored) == {e["key"] for e in listed} | {PREFIX + "manifest.json"}
    assert isinstance(manifest, dict)
    return manifest


def test_layout_manifest_and_order(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    store = recording(s3_server, bucket)
    summary = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    archive_sha = hashlib.sha256(deployment_files.archive.read_bytes()).hexdigest()
    expected_packages = {
        f"{PREFIX}{arch}/{name}"
        for arch in ("x86_64", "aarch64")
        for name in [
            "APKINDEX.tar.gz",
            "app0-1.0.0-r0.apk",
            "app1-1.0.0-r0.apk",
            "app2-1.0.0-r0.apk",
        ]
    }
    archive_key = f"archives/{archive_sha}/packages.zip"
    assert summary.archive_path == archive_key
    assert set(objects(s3_server, bucket)) == expected_packages | {
        archive_key,
        PREFIX + "manifest.json",
    }
    # Commit order: retract any manifest, then the packages and the archive (side by side:
    # the archive's key names its contents), then the manifest, last.
    assert store.order[0] == f"DELETE {PREFIX}manifest.json"
    assert sorted(store.order[1:-1]) == sorted([*expected_packages, archive_key])
    assert store.order[-1] == PREFIX + "manifest.json"
    manifest = assert_complete(s3_server, bucket, deployment_files)
    assert manifest["sha"] == SHA
    assert manifest["ref"] == "refs/heads/main"
    assert manifest["build"] == 12
    assert manifest["key_fingerprint"] == "sha256:abc"
    assert manifest["repository"] == "Acme/My.App"
    assert "created_at" in manifest
    head = s3_server.client().head_object(Bucket=bucket, Key=archive_key)
    assert head["ContentType"] == "application/zip"
    assert head["Metadata"]["sha256"] == archive_sha
    index = s3_server.client().head_object(Bucket=bucket, Key=f"{PREFIX}x86_64/APKINDEX.tar.gz")
    assert index["ContentType"] == "application/gzip"


def test_second_publish_uploads_nothing(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    first = publish(
        deployment_files.packages,
        deployment_files.archive,
        DEPLOYMENT,
        store_for(s3_server, bucket),
    )
    assert len(first.uploaded) == deployment_files.files + 2
    again = publish(
        deployment_files.packages,
        deployment_files.archive,
        DEPLOYMENT,
        store_for(s3_server, bucket),
    )
    assert again.uploaded == []
    assert len(again.skipped) == deployment_files.files + 2
    assert again.bytes == 0


def test_changed_deployment_retracts_its_manifest_first(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    """A rebuild for the same sha: the old manifest goes before any object changes."""
    publish(
        deployment_files.packages,
        deployment_files.archive,
        DEPLOYMENT,
        store_for(s3_server, bucket),
    )
    changed = dataclasses.replace(DEPLOYMENT, ref="refs/tags/v2")
    store = recording(s3_server, bucket)
    publish(deployment_files.packages, deployment_files.archive, changed, store)
    assert store.order == [f"DELETE {PREFIX}manifest.json", f"{PREFIX}manifest.json"]
    assert json.loads(objects(s3_server, bucket)[PREFIX + "manifest.json"])["ref"] == "refs/tags/v2"


def test_changed_object_is_uploaded_again(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    store = store_for(s3_server, bucket)
    publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    key = f"{PREFIX}x86_64/app0-1.0.0-r0.apk"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=b"corrupted by someone")
    again = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    # The object, and the manifest: retracted while the object changed, then written again.
    assert again.uploaded == [key, PREFIX + "manifest.json"]
    assert_complete(s3_server, bucket, deployment_files)


def test_multipart_archive_is_recognised_on_rerun(
    s3_server: S3Server, bucket: str, deployment_files: Built, tmp_path: Path
) -> None:
    """A 70 MB archive goes up in parts; its multipart ETag still matches on the next run."""
    big = tmp_path / "packages" / "acme" / "x86_64" / "big-1.0.0-r0.apk"
    big.write_bytes(os.urandom(70 * 1024 * 1024))
    from pakman import merge

    merge.write_zip(merge.collect([deployment_files.packages]), deployment_files.archive)
    store = store_for(s3_server, bucket)
    first = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    archive_etag = s3_server.client().head_object(Bucket=bucket, Key=first.archive_path)["ETag"]
    assert archive_etag.strip('"').endswith("-5")  # 70 MB in 16 MB parts
    again = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    assert again.uploaded == []


def test_dry_run_writes_nothing(s3_server: S3Server, bucket: str, deployment_files: Built) -> None:
    result = run_pakman(
        *cli_args(deployment_files, "--bucket", bucket, "--dry-run", "--json"),
        "--key",
        str(deployment_files.public_key),
        env=s3_server.env(),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] is True
    assert summary["uploaded"] == deployment_files.files + 2
    assert "plan   deployments/acme/app/" in result.stderr
    assert objects(s3_server, bucket) == {}


def test_a_publish_without_an_archive_makes_it_afresh_and_leaves_nothing(
    tmp_path: Path, deployment_files: Built
) -> None:
    """The zip made from the tree is made again by every run (it is deterministic), in a
    temporary folder that is gone afterwards: no kept copy decides what ships."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(scratch)}
    args = [
        "publish", str(deployment_files.packages), "--repository", "acme/app", "--sha", SHA,
        "--store", f"file://{tmp_path}/store", "--create-bucket",
        "--key", str(deployment_files.public_key), "--json",
    ]  # fmt: skip
    first = run_pakman(*args, env=env)
    assert first.returncode == 0, first.stderr
    again = run_pakman(*args, env=env)
    assert again.returncode == 0, again.stderr
    for run in (first, again):
        assert "made packages.zip from the packages tree" in run.stderr
    summary = json.loads(again.stdout)
    assert summary["uploaded"] == 0
    assert summary["archive_path"] == json.loads(first.stdout)["archive_path"]
    shipped = tmp_path / "store" / summary["archive_path"]
    assert shipped.read_bytes() == deployment_files.archive.read_bytes()
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "cache").exists()  # pakman keeps no cache


def test_a_bad_tree_is_reported_before_storage_is_heard_from(deployment_files: Built) -> None:
    """Storage is read while the files hash, but a local problem still wins: the run does
    not wait out the retries against an endpoint that is down."""
    extra = deployment_files.packages / "acme" / "x86_64" / "late-1.0.0-r0.apk"
    extra.write_bytes(b"built after the zip")
    dead = S3Store(
        bucket="releases",
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key_id="id",
        secret_access_key="key",
    )
    with pytest.raises(ConfigError, match=r"lacks x86_64/late-1\.0\.0-r0\.apk"):
        publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, dead)


def test_interrupted_publish_resumes(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """Kill a publish part-way; the rerun uploads only what is missing, and the result is whole."""
    built = build_deployment(tmp_path, count=30, size=500)
    proxy = FaultProxy(s3_server.port, "delay", delay=0.05).start()
    args = cli_args(
        built, "--bucket", bucket, "--concurrency", "1", "--json", "--key", str(built.public_key),
        repository="Acme/My.App",
    )  # fmt: skip
    env = {**os.environ, **s3_server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(objects(s3_server, bucket)) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        proxy.stop()
    present = set(objects(s3_server, bucket))
    assert 10 <= len(present) < built.files  # part-way, really
    assert PREFIX + "manifest.json" not in present  # it never looks complete
    rerun = run_pakman(*args, env=s3_server.env())
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == len(present)
    assert summary["uploaded"] == built.files + 2 - len(present)
    assert_complete(s3_server, bucket, built)


@pytest.mark.parametrize("mode", ["reset", "503"])
def test_publish_survives_faults(
    s3_server: S3Server, bucket: str, tmp_path: Path, mode: str
) -> None:
    built = build_deployment(tmp_path, count=10)
    proxy = FaultProxy(s3_server.port, mode, every=4).start()
    try:
        summary = publish(
            built.packages,
            built.archive,
            DEPLOYMENT,
            store_for(s3_server, bucket, proxy.endpoint, max_attempts=8),
            concurrency=4,
        )
    finally:
        proxy.stop()
    assert proxy.faults >= 3, f"the proxy injected only {proxy.faults} faults"
    assert len(summary.uploaded) == built.files + 2
    assert_complete(s3_server, bucket, built)


def test_server_down_is_a_clear_error(deployment_files: Built) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with_userinfo = dead.replace("http://", f"http://{SECRET_ID}:{SECRET_KEY}@")
    result = run_pakman(
        *cli_args(deployment_files, "--bucket", "releases", "--no-verify"),
        "--endpoint",
        with_userinfo,
        env={"AWS_ACCESS_KEY_ID": SECRET_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        timeout=180,
    )
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"error: storage s3://releases at {dead}: cannot reach the endpoint after 5 attempts"
    )
    assert SECRET_ID not in result.stderr
    assert SECRET_KEY not in result.stderr


def test_bad_credentials_missing_bucket_bad_endpoint(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    base = cli_args(deployment_files, "--key", str(deployment_files.public_key))
    # The real server's own answers: an unknown key id, and a known one with a wrong secret.
    wrong = run_pakman(
        *base,
        "--bucket",
        bucket,
        env={
            **s3_server.env(),
            "AWS_ACCESS_KEY_ID": SECRET_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        },
    )
    assert wrong.returncode == 3
    assert wrong.stderr.strip() == (
        f"error: storage s3://{bucket} at {s3_server.endpoint}: access denied"
        " (404 XAdminUserNotFound): check the credentials"
    )
    forged = run_pakman(
        *base, "--bucket", bucket, env={**s3_server.env(), "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    )
    assert forged.returncode == 3
    assert forged.stderr.strip().splitlines()[-1] == (
        f"error: storage s3://{bucket} at {s3_server.endpoint}: access denied"
        " (403 SignatureDoesNotMatch): check the credentials"
    )
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    missing = run_pakman(*base, "--bucket", "no-such-bucket", env=s3_server.env())
    assert missing.returncode == 3
    assert (
        "bucket 'no-such-bucket' does not exist (use --create-bucket to make it)" in missing.stderr
    )
    created = run_pakman(
        *base, "--bucket", "made-on-demand", "--create-bucket", env=s3_server.env()
    )
    assert created.returncode == 0, created.stderr
    bad = run_pakman(*base, "--bucket", bucket, "--endpoint", "not a url", env=s3_server.env())
    assert bad.returncode == 2
    assert "--endpoint: must be an http(s) URL" in bad.stderr
    for result in (wrong, forged, missing, created, bad):
        output = result.stdout + result.stderr
        assert "Traceback" not in output
        assert SECRET_ID not in output
        assert SECRET_KEY not in output
        assert s3_server.secret_access_key not in output


def test_publish_refuses_unverified_packages(deployment_files: Built, tmp_path: Path) -> None:
    target = deployment_files.packages / "acme" / "x86_64" / "app0-1.0.0-r0.apk"
    target.write_bytes(target.read_bytes()[:-10])
    result = run_pakman(
        *cli_args(deployment_files, "--store", f"file://{tmp_path}/store", "--create-bucket"),
        "--key",
        str(deployment_files.public_key),
    )
    assert result.returncode == 1
    assert "error: acme/x86_64/app0-1.0.0-r0.apk" in result.stderr
    assert not (tmp_path / "store").exists()


def test_terminal_gets_a_byte_progress_bar(tmp_path: Path, deployment_files: Built) -> None:
    """On a terminal, a progress bar in bytes; elsewhere, plain log lines (the other tests)."""
    import pty

    main, secondary = pty.openpty()
    args = cli_args(
        deployment_files, "--store", f"file://{tmp_path}/store", "--create-bucket", "--no-verify"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman.cli", *args],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    stdout, _ = process.communicate(timeout=120)
    terminal = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(main)
    assert process.returncode == 0
    assert b"100%|" in terminal
    assert b"kB/s" in terminal or b"MB/s" in terminal or b"B/s" in terminal
    assert b"put    " not in terminal  # no per-object lines on a terminal
    assert b"uploaded 10 object(s)" in stdout


def big_object(tmp_path: Path, name: str = "packages.zip") -> tuple[LocalObject, bytes]:
    """A file just over the multipart threshold, hashed, under its content-addressed key."""
    from pakman.digest import MULTIPART_CHUNK
    from pakman.storage.objects import hash_file

    big = tmp_path / name
    big.write_bytes(os.urandom(4 * MULTIPART_CHUNK + 1234))
    hashed = hash_file(big, "x")
    return dataclasses.replace(hashed, key=f"archives/{hashed.sha256}/{name}"), big.read_bytes()


def stage_and_commit(store: S3Store, local: LocalObject) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        staged = store.stage(local, pool)
        staged.commit()
    return staged


def interrupted_upload(
    server: S3Server, bucket: str, local: LocalObject, data: bytes, algorithm: str
) -> str:
    """What a killed run leaves: a multipart upload with parts 1 and 2 of the data and a
    part 3 that does not match it."""
    from pakman.digest import MULTIPART_CHUNK

    client = server.client()
    upload = client.create_multipart_upload(
        Bucket=bucket, Key=local.key, ChecksumAlgorithm=algorithm
    )
    for number in (1, 2, 3):
        part = data[(number - 1) * MULTIPART_CHUNK : number * MULTIPART_CHUNK]
        if number == 3:
            part = os.urandom(len(part))
        client.upload_part(
            Bucket=bucket,
            Key=local.key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=part,
            ChecksumAlgorithm=algorithm,  # a real server refuses a part of another type
        )
    return str(upload["UploadId"])


def test_interrupted_archive_upload_resumes_its_parts(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A killed run leaves a multipart upload of the (content-addressed) archive; the next
    run re-uses the parts already sent and completes it."""
    local, data = big_object(tmp_path)
    interrupted_upload(s3_server, bucket, local, data, "SHA256")
    staged = stage_and_commit(store_for(s3_server, bucket), local)
    assert staged.reused == 2  # part 3 did not match: sent again
    client = s3_server.client()
    body = client.get_object(Bucket=bucket, Key=local.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == local.sha256
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_upload_with_another_checksum_is_not_resumed(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Its parts could not be completed beside SHA-256 ones, and their CRC-32s prove
    nothing: a fresh upload is made."""
    local, data = big_object(tmp_path)
    old = interrupted_upload(s3_server, bucket, local, data, "CRC32")
    staged = stage_and_commit(store_for(s3_server, bucket), local)
    assert staged.reused == 0
    assert staged.upload_id != old
    body = s3_server.client().get_object(Bucket=bucket, Key=local.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == local.sha256


def test_every_upload_carries_a_sha256_the_server_keeps(
    s3_server: S3Server, bucket: str, deployment_files: Built, tmp_path: Path
) -> None:
    """Single PUTs carry the object's SHA-256, multipart uploads each part's: S3 checks
    the bytes against them and keeps the (composite) checksum."""
    from pakman.digest import MULTIPART_CHUNK

    publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT,
            store_for(s3_server, bucket))  # fmt: skip
    local, _ = big_object(tmp_path)
    stage_and_commit(store_for(s3_server, bucket), local)
    client = s3_server.client()
    for key, body in objects(s3_server, bucket).items():
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        if key == local.key:
            parts = b"".join(
                hashlib.sha256(body[i : i + MULTIPART_CHUNK]).digest()
                for i in range(0, len(body), MULTIPART_CHUNK)
            )
            expected = hashlib.sha256(parts).digest()
        else:
            expected = hashlib.sha256(body).digest()
        stored = head.get("ChecksumSHA256", "").split("-")[0]
        assert stored == base64.b64encode(expected).decode(), key


def test_multipart_object_with_our_sha256_but_other_bytes_is_sent_again(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Metadata is only a claim: the checksum S3 computed of the stored bytes decides."""
    from boto3.s3.transfer import TransferConfig

    from pakman.digest import MULTIPART_CHUNK

    local, data = big_object(tmp_path)
    forged = tmp_path / "forged"
    forged.write_bytes(os.urandom(len(data)))  # same size, other bytes
    # Stored under local's key with local's sha256 metadata, by another S3 client.
    s3_server.client().upload_file(
        str(forged),
        bucket,
        local.key,
        ExtraArgs={"Metadata": {"sha256": local.sha256}, "ChecksumAlgorithm": "CRC32"},
        Config=TransferConfig(
            multipart_threshold=MULTIPART_CHUNK, multipart_chunksize=MULTIPART_CHUNK
        ),
    )
    store = store_for(s3_server, bucket)
    head = s3_server.client().head_object(Bucket=bucket, Key=local.key)
    assert head["Metadata"]["sha256"] == local.sha256
    remote = store.head(local.key)
    assert remote is not None
    assert not store.matches(local, remote)
    stage_and_commit(store, local)
    remote = store.head(local.key)
    assert remote is not None
    assert store.matches(local, remote)


def test_a_store_without_checksums_is_confirmed_by_etag(
    s3_server: S3Server, bucket: str, deployment_files: Built, tmp_path: Path
) -> None:
    """Stores that ignore checksums still answer an MD5 ETag: single PUTs and parts are
    confirmed by it (computed only then)."""
    proxy = FaultProxy(s3_server.port, "plain").start()
    try:
        store = store_for(s3_server, bucket, proxy.endpoint)
        summary = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
        assert len(summary.uploaded) == deployment_files.files + 2
        assert_complete(s3_server, bucket, deployment_files)
        local, data = big_object(tmp_path)
        staged = stage_and_commit(store, local)
    finally:
        proxy.stop()
    assert len(staged.parts) == 5
    assert s3_server.client().get_object(Bucket=bucket, Key=local.key)["Body"].read() == data


@pytest.mark.parametrize("multipart", [False, True])
def test_bytes_changed_on_the_way_are_refused_by_a_real_server(
    s3_server: S3Server, bucket: str, deployment_files: Built, tmp_path: Path, multipart: bool
) -> None:
    """A proxy flips a byte of every uploaded body and keeps the checksum header: the real
    server refuses the body (BadDigest), nothing is stored, and no manifest is written."""
    refused = _corrupted(s3_server, bucket, deployment_files, tmp_path, multipart)
    assert "400 BadDigest" in str(refused)
    listing = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listing == []


@pytest.mark.parametrize("multipart", [False, True])
def test_bytes_changed_on_the_way_are_refused_where_the_store_checks_nothing(
    moto: S3Server, deployment_files: Built, tmp_path: Path, multipart: bool
) -> None:
    """moto, on purpose: a store that neither checks nor echoes checksums, and stored other
    bytes than were sent. Its ETag gives it away, and no manifest is written."""
    bucket = f"lying-{int(multipart)}"
    moto.client().create_bucket(Bucket=bucket)
    refused = _corrupted(moto, bucket, deployment_files, tmp_path, multipart)
    assert "does not confirm the bytes sent" in str(refused)
    listing = moto.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert PREFIX + "manifest.json" not in {o["Key"] for o in listing}


def _corrupted(
    server: S3Server, bucket: str, files: Built, tmp_path: Path, multipart: bool
) -> PublishError:
    proxy = FaultProxy(server.port, "corrupt").start()
    try:
        store = store_for(server, bucket, proxy.endpoint, max_attempts=1)
        send: Any = (
            (lambda: stage_and_commit(store, big_object(tmp_path)[0]))
            if multipart
            else (lambda: publish(files.packages, files.archive, DEPLOYMENT, store))
        )
        with pytest.raises(PublishError) as raised:
            send()
        return raised.value
    finally:
        proxy.stop()


def test_a_planted_big_object_with_a_forged_crc32_is_sent_again(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """Issue 27.12 for multipart sizes: other bytes under the (public) content-addressed
    key, the same size and whole-object CRC-32 the server keeps. Not the archive: it is
    sent again, and then the store's composite SHA-256 proves it."""
    import zlib

    from tests.support.forge import forge

    local, data = big_object(tmp_path)
    forged = forge(data, len(data) // 2, zlib.crc32)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=local.key, Body=forged, ChecksumAlgorithm="CRC32")
    store = store_for(s3_server, bucket)
    remote = store.head(local.key)
    assert remote is not None
    assert remote.crc32 == local.crc32_b64
    assert remote.size == local.size
    assert not store.matches(local, remote)
    stage_and_commit(store, local)
    remote = store.head(local.key)
    assert remote is not None
    assert store.matches(local, remote)
    assert client.get_object(Bucket=bucket, Key=local.key)["Body"].read() == data


# --- hostile input: each one clean error, nothing lost or leaked --------------------------


def test_a_tree_rewritten_in_place_is_never_published_stale(
    tmp_path: Path, deployment_files: Built
) -> None:
    """unzip -o over the last tree: same inode, size and mtime; only the bytes (and ctime)."""
    store = tmp_path / "store"
    args = [*publish_args(deployment_files, "--no-verify"), "--store", f"file://{store}"]
    assert run_pakman(*args, "--create-bucket").returncode == 0
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    before = package.stat()
    new = bytes(b ^ 0x5A for b in package.read_bytes())
    time.sleep(0.2)  # past the racy window of the first hashing
    with package.open("r+b") as handle:
        handle.write(new)
    os.utime(package, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (package.stat().st_ino, package.stat().st_size) == (before.st_ino, before.st_size)
    again = run_pakman(*args)
    assert again.returncode == 0, again.stderr
    stored = store / f"deployments/acme/app/{SHA}/x86_64/{package.name}"
    assert stored.read_bytes() == new


def _tree(base: Path, marker: bytes) -> Built:
    """A tree whose names and sizes do not depend on ``marker``, only its bytes do."""
    from pakman import merge

    key = SigningKey(KEY, "acme-app.rsa.pub")
    for arch in ("x86_64", "aarch64"):
        built = [
            make_package(key, f"app{i}", "1.0.0-r0", arch, files={"srv/a": marker * 3000})
            for i in range(6)
        ]
        write_repo(base / "packages" / "acme", key, built, arch)
    merge.write_zip(merge.collect([base / "packages"]), base / "packages.zip")
    return Built(base / "packages", base / "packages.zip", key.write_public(base / "keys"), 14)


def test_concurrent_publishes_of_one_sha_never_leave_a_false_manifest(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    """Two runs, same sha, different bytes, at once: a manifest, if any, tells the truth."""
    trees = [_tree(tmp_path / name, name.encode()) for name in ("one", "two")]
    env = s3_server.env()
    for _ in range(3):

        def publish(built: Built) -> subprocess.CompletedProcess[str]:
            return run_pakman(*publish_args(built, "--bucket", bucket), env=env)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(publish, trees))
        for result in results:
            assert result.returncode in (0, 3), result.stderr
            assert "Traceback" not in result.stderr
        client = s3_server.client()
        key = f"deployments/acme/app/{SHA}/manifest.json"
        try:
            manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            continue  # no manifest: the deployment does not claim to be complete
        for entry in manifest["objects"]:
            data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]


def test_an_upload_planned_before_anothers_whole_run_overwrites_nothing(
    tmp_path: Path, s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run two's uploads straddle a whole run one: one's manifest is written before two's
    last upload, which used to replace an object behind it (two then took the manifest
    down, if it lived to). That upload is conditional on what two planned against (no
    object), so it is refused: two fails, having replaced nothing, and one's manifest
    stays, true."""
    one, two = (_tree(tmp_path / name, name.encode()) for name in ("one", "two"))
    options = StoreOptions.resolve(
        s3_server.env(),
        bucket=bucket,
        concurrency=1,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    target = Deployment.resolve("acme/app", SHA)
    put = S3Store.put
    raced: list[str] = []

    def racing(self: S3Store, local: Any, progress: Any = None, **kw: Any) -> str:
        # With one upload at a time, two's last package goes up last, before its manifest:
        # run one, whole, just before it.
        if not raced and local.key.endswith("x86_64/app5-1.0.0-r0.apk"):
            raced.append(local.key)
            pipeline.publish(one.packages, None, target, _trust(one), options)
            assert _manifest(s3_server, bucket) is not None
        return put(self, local, progress, **kw)

    monkeypatch.setattr(S3Store, "put", racing)
    with pytest.raises(PublishError, match="another publish of this sha"):
        pipeline.publish(two.packages, None, target, _trust(two), options)
    assert raced
    manifest = _manifest(s3_server, bucket)
    assert manifest is not None
    client = s3_server.client()
    for entry in [*manifest["objects"], manifest["archive"]]:
        data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]


# Run two, in its own process: every upload to the deployment's prefix waits at a gate
# once planned, and the first one made signals it and hangs, for the test to SIGKILL the
# run right there.
HELD_AT_THE_GATE = """
import sys, time
from pathlib import Path
from pakman.cli import main
from pakman.storage.s3 import S3Store

gate, put = Path(sys.argv[1]), S3Store.put

def held(self, local, progress=None, **kw):
    if not local.key.startswith("deployments/"):  # the archive's own key names its bytes
        return put(self, local, progress, **kw)
    (gate / "planned").touch()
    while not (gate / "go").exists():
        time.sleep(0.01)
    etag = put(self, local, progress, **kw)
    (gate / "overwrote").touch()
    time.sleep(300)
    return etag

S3Store.put = held
sys.exit(main(sys.argv[2:]))
"""


def test_a_run_killed_after_an_overwrite_never_leaves_another_runs_manifest_false(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Issue 27.13: two publishes of one sha, different bytes. Two plans against the
    empty bucket, then one runs whole and writes its manifest, then two uploads and is
    SIGKILLed as soon as one upload is made: nobody is left to retract one's manifest.
    Two's writes are conditional on what it planned against (If-None-Match here), so
    none is made behind one's manifest, which stays and tells the truth. Cold, in a
    loop: a fresh bucket and fresh processes each round."""
    one, two = (_tree(tmp_path / name, name.encode()) for name in ("one", "two"))
    client = s3_server.client()
    for round_ in range(3):
        bucket = f"killed-overwrite-{round_}"
        client.create_bucket(Bucket=bucket)
        gate = tmp_path / f"gate-{round_}"
        gate.mkdir()
        args = publish_args(two, "--bucket", bucket)
        second = subprocess.Popen(
            [sys.executable, "-c", HELD_AT_THE_GATE, str(gate), *args],
            env={**os.environ, **s3_server.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not (gate / "planned").exists() and second.poll() is None:
                assert time.monotonic() < deadline, "run two never planned"
                time.sleep(0.01)
            assert second.poll() is None, second.communicate()
            first = run_pakman(*publish_args(one, "--bucket", bucket), env=s3_server.env())
            assert first.returncode == 0, first.stderr
            (gate / "go").touch()
            while not (gate / "overwrote").exists() and second.poll() is None:
                assert time.monotonic() < deadline, "run two neither wrote nor stopped"
                time.sleep(0.01)
        finally:
            if second.poll() is None:
                second.kill()  # SIGKILL: no clean-up runs
            _, stderr = second.communicate()
        manifest = _manifest(s3_server, bucket)
        assert manifest is not None  # two changed nothing, so one's manifest stays
        for entry in [*manifest["objects"], manifest["archive"]]:
            data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]
        assert not (gate / "overwrote").exists(), "run two overwrote an object"
        ended = subprocess.CompletedProcess(args, second.returncode, "", stderr)
        one_line_error(ended, 3, "another publish of this sha changed")


def _trust(built: Built) -> Trust:
    return trust_files([str(built.public_key)])


def _manifest(server: S3Server, bucket: str) -> dict[str, Any] | None:
    client = server.client()
    try:
        body = client.get_object(Bucket=bucket, Key=f"deployments/acme/app/{SHA}/manifest.json")
    except client.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body["Body"].read()))


def ok_to_everything(handler: BaseHTTPRequestHandler, method: str) -> None:
    answer(handler, 200)


def test_an_endpoint_that_answers_200_to_everything_uploads_nothing(
    deployment_files: Built,
) -> None:
    with http_server(ok_to_everything) as endpoint:
        result = run_pakman(
            *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
            env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
        )
    one_line_error(result, 3, "does not confirm the bytes sent")
    assert "uploaded" not in result.stdout


def test_a_multipart_answer_without_an_upload_id_is_a_clear_error(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    with big.open("wb") as handle:
        handle.truncate(70 * 1024 * 1024)
    local = hash_file(big, f"archives/{'0' * 64}/packages.zip")
    with http_server(ok_to_everything) as endpoint, ThreadPoolExecutor(2) as pool:
        store = S3Store("releases", endpoint, access_key_id="id", secret_access_key="key")
        with pytest.raises(PublishError, match="has no UploadId"):
            store.stage(local, pool)


def _forge(archive: Path, entries: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in entries:
            zipped.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize(
    ("forgery", "message"),
    [
        ("absolute", "unexpected entry '/acme/x86_64/x.apk'"),
        ("dotdot", "unexpected entry 'acme/../x86_64/x.apk'"),
        ("duplicate", "twice"),
        ("stray", "unexpected entry 'acme/x86_64/notes.txt'"),
        ("corrupt member", "is corrupt (its bytes fail their CRC)"),
    ],
)
def test_the_archive_is_checked_member_by_member(
    forgery: str, message: str, tmp_path: Path, deployment_files: Built
) -> None:
    archive = deployment_files.archive
    with zipfile.ZipFile(archive) as zipped:
        entries = [(i.filename, zipped.read(i)) for i in zipped.infolist()]
    if forgery == "corrupt member":
        # Flip one stored byte of the first member; its central directory stays intact.
        data = bytearray(archive.read_bytes())
        with zipfile.ZipFile(archive) as zipped:
            first = zipped.infolist()[0]
        start = first.header_offset + 30 + len(first.filename) + len(first.extra)
        data[start + 5] ^= 0xFF
        archive.write_bytes(bytes(data))
    else:
        extra = {
            "absolute": ("/acme/x86_64/x.apk", b"x"),
            "dotdot": ("acme/../x86_64/x.apk", b"x"),
            "duplicate": entries[0],
            "stray": ("acme/x86_64/notes.txt", b"x"),
        }[forgery]
        _forge(archive, [*entries, extra])
    result = run_pakman(
        *publish_args(deployment_files, "--archive", str(archive)),
        "--store",
        f"file://{tmp_path / 'store'}",
        "--create-bucket",
    )
    one_line_error(result, 2, message)
    assert not (tmp_path / "store").exists()


def test_a_trickling_server_is_bounded_by_the_timeout(deployment_files: Built) -> None:
    with http_server(trickle) as endpoint:
        result = run_pakman(
            *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
            "--timeout",
            "2",
            env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
            timeout=120,  # a guard for the test itself: the run must end long before
        )
    one_line_error(result, 3, "gave up after 2 s (--timeout)")


def _publish_through_cuts(
    s3_server: S3Server, bucket: str, built: Built, every: int
) -> tuple[subprocess.CompletedProcess[str], FaultProxy]:
    """Publish through a proxy that cuts the first ``every`` error answers' bodies."""
    proxy = FaultProxy(s3_server.port, "cut-errors", every=every).start()
    try:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        return run_pakman(*publish_args(built, "--bucket", bucket), env=env), proxy
    finally:
        proxy.stop()


def test_a_cut_error_body_is_retried(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    """A NoSuchKey answer (the manifest not there yet) broken off halfway, then a reset:
    urllib3's ProtocolError used to escape as 'unexpected', exit 1."""
    result, proxy = _publish_through_cuts(s3_server, bucket, deployment_files, every=2)
    assert proxy.faults == 2  # both cut, then retried
    assert result.returncode == 0, result.stderr
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"deployments/acme/app/{SHA}/manifest.json" in keys


def test_error_bodies_that_always_break_off_are_a_storage_error(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    result, _ = _publish_through_cuts(s3_server, bucket, deployment_files, every=1000)
    one_line_error(result, 3, f"storage s3://{bucket}", "the answer broke off after 5 attempts")
    assert "ProtocolError" in result.stderr


def test_a_store_that_checks_nothing_is_judged_by_its_etags(moto: S3Server, tmp_path: Path) -> None:
    """moto takes a part sent with a wrong SHA-256 (the run's probe shows it) and keeps
    the composite it was sent, without S3's ``-<parts>``: after a multipart upload there,
    what it holds is proven by the ETags it computed, so a publish whose archive goes up
    in parts completes, and so does the re-publish. (It failed its read-back, saying
    another publish had changed the archive.)"""
    from pakman.digest import MULTIPART_THRESHOLD

    files = build_deployment(tmp_path / "big", count=1, size=MULTIPART_THRESHOLD // 2 + 4096)
    assert files.archive.stat().st_size >= MULTIPART_THRESHOLD
    moto.client().create_bucket(Bucket="checks-nothing")
    first = publish(files.packages, files.archive, DEPLOYMENT, store_for(moto, "checks-nothing"))
    assert len(first.uploaded) == files.files + 2
    again = publish(files.packages, files.archive, DEPLOYMENT, store_for(moto, "checks-nothing"))
    # Its kept checksum proves nothing and no upload has probed it yet: the archive goes
    # again (the manifest with it); the small packages' checksums are taken as before.
    assert set(again.uploaded) == {first.archive_path, PREFIX + "manifest.json"}
