"""Only bytes read in this run are trusted: nothing remembered decides what is verified,
shipped or deleted.

Each case was a way through the caches pakman used to keep (a hash cache with "proved"
facts, a kept archive with a clean-up), reproduced here as a hostile user or a racing
writer would: a second local user's planted cache, a planted link, rewrites while a run
reads, a filesystem with 1-second timestamps, a store or proxy that lies, a FIFO.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import boto3
import pytest

from devkit.s3 import S3Server
from pakman import merge, pipeline
from pakman import verify as verify_module
from pakman.errors import ConfigError
from pakman.publish.deployment import Deployment
from pakman.storage.options import StoreOptions
from pakman.trust import trust_files
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built, build_deployment, publish_args
from tests.support.faults import FaultProxy
from tests.support.forge import forge
from tests.support.instellar import SHA
from tests.unit.test_trust import _manifests, _tamper


def _store_args(built: Built, store: Path, *extra: str) -> list[str]:
    return [*publish_args(built, "--store", f"file://{store}", "--create-bucket"), *extra]


def test_no_run_deletes_through_a_planted_link(deployment_files: Built, tmp_path: Path) -> None:
    """The old clean-up of kept archives followed a link planted in its folder and removed
    a packages.zip over a minute old wherever it pointed."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "packages.zip").write_bytes(b"someone's own zip")
    old = time.time() - 3600
    os.utime(victim / "packages.zip", (old, old))
    made = tmp_path / "cache" / "pakman" / "made"
    made.mkdir(parents=True)
    (made / ("0" * 64)).symlink_to(victim)
    result = run_pakman(
        *_store_args(deployment_files, tmp_path / "store"),
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr
    assert (victim / "packages.zip").read_bytes() == b"someone's own zip"


def test_an_object_whose_metadata_matches_but_bytes_do_not_is_sent_again(
    moto: S3Server, deployment_files: Built
) -> None:
    """moto, a store that keeps no checksum: our own sha256 in the metadata is only a
    claim, and the ETag (the MD5 of the bytes it holds) decides."""
    from botocore.config import Config

    bucket = "metadata-claims"
    client = moto.client()
    client.create_bucket(Bucket=bucket)
    plain = boto3.client(  # a PUT without a checksum: the store keeps none
        "s3",
        endpoint_url=moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id=moto.access_key_id,
        aws_secret_access_key=moto.secret_access_key,
        config=Config(request_checksum_calculation="when_required"),
    )
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    key = f"deployments/acme/app/{SHA}/x86_64/{package.name}"
    real = hashlib.sha256(package.read_bytes()).hexdigest()
    other = os.urandom(package.stat().st_size)
    plain.put_object(Bucket=bucket, Key=key, Body=other, Metadata={"sha256": real})
    assert "ChecksumCRC32" not in client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    result = run_pakman(*publish_args(deployment_files, "--bucket", bucket), env=moto.env())
    assert result.returncode == 0, result.stderr
    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == package.read_bytes()


def test_a_store_that_keeps_other_bytes_and_lies_about_it_gets_no_manifest(
    moto: S3Server, deployment_files: Built
) -> None:
    """A proxy changes every body, sends no checksum upstream and answers with the client's
    own CRC-32: each answer looks right, and the read-back catches the stored bytes."""
    bucket = "lying-store"
    moto.client().create_bucket(Bucket=bucket)
    proxy = FaultProxy(moto.port, "lie").start()
    try:
        env = {**moto.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        result = run_pakman(*publish_args(deployment_files, "--bucket", bucket), env=env)
    finally:
        proxy.stop()
    one_line_error(result, 3, "does not hold the bytes this run uploaded")
    listing = moto.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert f"deployments/acme/app/{SHA}/manifest.json" not in {o["Key"] for o in listing}


@pytest.mark.parametrize("planted", ["fifo", "dev-zero"])
def test_nothing_at_the_old_cache_path_is_read(
    planted: str, deployment_files: Built, tmp_path: Path
) -> None:
    """A FIFO there hung publish until its watchdog; a link to /dev/zero ended in
    MemoryError. pakman keeps no cache, so it opens neither."""
    cache = tmp_path / "cache" / "pakman"
    cache.mkdir(parents=True)
    path = cache / "hashes-v3.json"
    if planted == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result = run_pakman(
        *_store_args(deployment_files, tmp_path / "store"),
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_sigterm_while_the_archive_is_made_leaves_no_temporary_files(tmp_path: Path) -> None:
    built = build_deployment(tmp_path / "big", count=3, size=60 * 1024 * 1024)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman.cli", *_store_args(built, tmp_path / "store")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(scratch.glob("pakman-archive-*/*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert list(scratch.glob("pakman-archive-*")), "the archive was never being made"
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 143
    assert list(scratch.iterdir()) == []
    assert process.stderr is not None
    assert b"Traceback" not in process.stderr.read()


def test_pakman_writes_no_cache(deployment_files: Built, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for _ in range(2):
        result = run_pakman(
            *_store_args(deployment_files, tmp_path / "store"), env={"XDG_CACHE_HOME": str(cache)}
        )
        assert result.returncode == 0, result.stderr
    assert not cache.exists()


def test_the_archive_key_and_manifest_describe_the_bytes_stored(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    result = run_pakman(
        *publish_args(deployment_files, "--bucket", bucket, "--json"), env=s3_server.env()
    )
    assert result.returncode == 0, result.stderr
    client = s3_server.client()
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key=f"deployments/acme/app/{SHA}/manifest.json")[
            "Body"
        ].read()
    )
    for item in [*manifest["objects"], manifest["archive"]]:
        body = client.get_object(Bucket=bucket, Key=item["key"])["Body"].read()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (item["size"], item["sha256"])


# --- CRC-32 is a transfer checksum, never the evidence: forged, it must not pass ---------


def _s3_options(server: S3Server, bucket: str) -> StoreOptions:
    return StoreOptions.resolve(
        {},
        bucket=bucket,
        endpoint=server.endpoint,
        concurrency=1,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )


def _stored_keys(server: S3Server, bucket: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_an_archive_read_beside_verification_is_still_checked_entry_by_entry(
    deployment_files: Built, tmp_path: Path
) -> None:
    """The CLI reads a given archive in a child process while it verifies: the entries'
    SHA-256s it hands back are still compared with the verified ones: a forged CRC-32
    entry is refused and nothing stored; the true archive is published."""
    package = next((deployment_files.packages / "acme" / "aarch64").glob("app2-*.apk"))
    forged_tree = tmp_path / "forged"
    shutil.copytree(deployment_files.packages, forged_tree)
    data = package.read_bytes()
    (forged_tree / package.relative_to(deployment_files.packages)).write_bytes(
        forge(data, len(data) // 3, zlib.crc32)
    )
    archive = tmp_path / "forged.zip"
    merge.write_zip(merge.collect([forged_tree]), archive)
    store = tmp_path / "store"
    result = run_pakman(*_store_args(deployment_files, store, "--archive", str(archive)))
    one_line_error(result, 2, f"aarch64/{package.name} differs from")
    assert [p for p in store.rglob("*") if p.is_file()] == [] if store.exists() else True
    good = run_pakman(
        *_store_args(deployment_files, store, "--archive", str(deployment_files.archive))
    )
    assert good.returncode == 0, good.stderr
    assert len(_manifests(store)) == 1


def test_a_package_forged_before_its_put_is_never_sent(
    deployment_files: Built,
    s3_server: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rewritten between the plan and its PUT, with the size and CRC-32 kept: the server
    would accept the body (its CRC-32 is right); the SHA-256 of what is sent refuses it."""
    from pakman.storage.s3 import S3Store

    package = next((deployment_files.packages / "acme" / "aarch64").glob("app2-*.apk"))
    data = package.read_bytes()
    put = S3Store.put

    def racing(self: S3Store, local: Any, progress: Any = None, **kw: Any) -> str:
        if local.key.endswith(f"aarch64/{package.name}"):
            package.write_bytes(forge(data, len(data) // 2, zlib.crc32))
        return put(self, local, progress, **kw)

    monkeypatch.setattr(S3Store, "put", racing)
    trust = trust_files([str(deployment_files.public_key)])
    target = Deployment.resolve("acme/app", SHA)
    with pytest.raises(ConfigError, match=f"{package.name}: changed after it was verified"):
        pipeline.publish(
            deployment_files.packages,
            deployment_files.archive,
            target,
            trust,
            _s3_options(s3_server, bucket),
        )
    stored = _stored_keys(s3_server, bucket)
    assert not any(key.endswith(f"aarch64/{package.name}") for key in stored), stored
    assert not any(key.endswith("manifest.json") for key in stored), stored


@pytest.mark.parametrize("checking", [True, False], ids=["store-checks", "moto-checks-nothing"])
def test_a_big_file_forged_while_its_parts_go_up_is_never_completed(
    tmp_path: Path, request: pytest.FixtureRequest, checking: bool
) -> None:
    """Every part keeps its CRC-32, and so does the whole: a CRC-32 check would pass. The
    SHA-256 of each part as sent, against the same part in the verified read, refuses it
    before anything is completed: the store's check where this run showed it checks
    (versitygw, as S3), this side's where it does not (moto)."""
    from concurrent.futures import ThreadPoolExecutor

    from pakman.digest import MULTIPART_CHUNK, digest_file
    from pakman.storage.objects import local_object

    big = tmp_path / "big.apk"
    data = os.urandom(4 * MULTIPART_CHUNK + 1234)
    big.write_bytes(data)
    local = local_object("deployments/acme/app/x/big.apk", big, digest_file(big))
    assert len(local.part_sha256) == 5
    at = MULTIPART_CHUNK + 1000  # in part 2

    def checks(candidate: bytes) -> int:
        part = candidate[MULTIPART_CHUNK : 2 * MULTIPART_CHUNK]
        return zlib.crc32(candidate) | zlib.crc32(part) << 32

    big.write_bytes(forge(data, at, checks))
    server: S3Server = request.getfixturevalue("s3_server" if checking else "moto")
    bucket = f"forged-parts-{int(checking)}"
    server.client().create_bucket(Bucket=bucket)
    store = _s3_options(server, bucket).open()
    with ThreadPoolExecutor(4) as pool, pytest.raises(ConfigError, match="changed after"):
        store.stage(local, pool).commit()
    assert getattr(store, "_checks_parts", None) is checking
    assert _stored_keys(server, bucket) == []


def test_a_planted_object_with_a_forged_crc32_is_not_taken_as_the_package(
    deployment_files: Built, s3_server: S3Server, bucket: str
) -> None:
    """Issue 27.12: other bytes at a package's key, same size, and a CRC-32 the real
    server computed and keeps that equals the package's. Only the SHA-256 the store
    computed counts: the package is sent again, and the manifest tells the truth."""
    import base64

    client = s3_server.client()
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    data = package.read_bytes()
    key = f"deployments/acme/app/{SHA}/x86_64/{package.name}"
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=forge(data, len(data) // 2, zlib.crc32),
        ChecksumAlgorithm="CRC32",
    )
    kept = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert kept["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert kept["ContentLength"] == len(data)
    result = run_pakman(*publish_args(deployment_files, "--bucket", bucket), env=s3_server.env())
    assert result.returncode == 0, result.stderr
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key=f"deployments/acme/app/{SHA}/manifest.json")[
            "Body"
        ].read()
    )
    for entry in [*manifest["objects"], manifest["archive"]]:
        stored = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"], entry["key"]


def test_a_package_rewritten_after_verification_is_never_uploaded(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is uploaded is what was verified: every upload compares the bytes it sends
    with the verified digests. The old code hashed the files again after verifying them."""
    package = next((deployment_files.packages / "acme" / "aarch64").glob("app2-*.apk"))
    # The archive a writer would leave: made from the tree as it will be after the rewrite.
    later = tmp_path / "later"
    shutil.copytree(deployment_files.packages, later)
    _tamper(later / package.relative_to(deployment_files.packages))
    archive = tmp_path / "given.zip"
    merge.write_zip(merge.collect([later]), archive)
    verify_tree = verify_module.verify_tree

    def racing(*args: Any, **kwargs: Any) -> verify_module.Report:
        report = verify_tree(*args, **kwargs)
        _tamper(package)  # now the tree and the archive agree, on unverified bytes
        return report

    monkeypatch.setattr(verify_module, "verify_tree", racing)
    trust = trust_files([str(deployment_files.public_key)])
    store = tmp_path / "store"
    options = StoreOptions.resolve({}, store=f"file://{store}", create_bucket=True)
    target = Deployment.resolve("acme/app", SHA)
    with pytest.raises(ConfigError) as raised:
        pipeline.publish(deployment_files.packages, archive, target, trust, options)
    assert "acme/aarch64/app2-1.0.0-r0.apk" in str(raised.value)
    assert _manifests(store) == []
    shipped = store / target.prefix / "aarch64" / package.name
    assert not shipped.exists() or shipped.read_bytes() != package.read_bytes()


def test_an_archive_entry_with_a_forged_crc_is_refused(
    deployment_files: Built, tmp_path: Path
) -> None:
    """Same size, same CRC-32, other bytes: the check took the entry by its CRC."""
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app1-*.apk"))
    forged_tree = tmp_path / "forged"
    shutil.copytree(deployment_files.packages, forged_tree)
    data = package.read_bytes()
    forged = forge(data, len(data) // 2, zlib.crc32)
    (forged_tree / package.relative_to(deployment_files.packages)).write_bytes(forged)
    archive = tmp_path / "forged.zip"
    merge.write_zip(merge.collect([forged_tree]), archive)
    trust = trust_files([str(deployment_files.public_key)])
    store = tmp_path / "store"
    options = StoreOptions.resolve({}, store=f"file://{store}", create_bucket=True)
    target = Deployment.resolve("acme/app", SHA)
    with pytest.raises(ConfigError, match=f"x86_64/{package.name} differs from"):
        pipeline.publish(deployment_files.packages, archive, target, trust, options)
    assert not store.exists() or [p for p in store.rglob("*") if p.is_file()] == []
