from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pakman import tree
from pakman.digest import digest_file
from pakman.errors import ConfigError, PublishError
from pakman.identity import Identity
from pakman.publish import upload
from pakman.publish.deployment import Deployment
from pakman.publish.upload import Summary
from pakman.storage.filestore import FileStore
from pakman.storage.objects import Store, hash_file
from tests.support.deployment import Built
from tests.support.instellar import SHA

DEPLOYMENT = Deployment(Identity("Acme/My.App", build=12), SHA, "refs/heads/main", "sha256:abc")


PREFIX = f"deployments/acme/my-app/{SHA}/"


def publish(
    packages: Path, archive: Path, deployment: Deployment, store: Store, **options: Any
) -> Summary:
    """The publish step as the pipeline hands it a tree: one walk, every file read once
    (here without verification, which the pipeline's own tests cover)."""
    walked = tree.snapshot(packages)
    digests = {path: digest_file(path) for path in walked.paths}
    return upload.publish(walked, digests, archive, deployment, store, **options)


def test_file_store_is_idempotent(tmp_path: Path, deployment_files: Built) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(PublishError, match="no such folder"):
        publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    first = publish(
        deployment_files.packages, deployment_files.archive, DEPLOYMENT, store, create_bucket=True
    )
    assert len(first.uploaded) == deployment_files.files + 2
    manifest = json.loads((tmp_path / "store" / PREFIX / "manifest.json").read_text())
    assert manifest["archive"]["key"] == first.archive_path
    assert (
        tmp_path / "store" / first.archive_path
    ).read_bytes() == deployment_files.archive.read_bytes()
    again = publish(deployment_files.packages, deployment_files.archive, DEPLOYMENT, store)
    assert again.uploaded == []


def test_stale_archive_is_refused(tmp_path: Path, deployment_files: Built) -> None:
    extra = deployment_files.packages / "acme" / "x86_64" / "late-1.0.0-r0.apk"
    extra.write_bytes(b"built after the zip")
    with pytest.raises(ConfigError) as caught:
        publish(
            deployment_files.packages,
            deployment_files.archive,
            DEPLOYMENT,
            FileStore(tmp_path / "s"),
        )
    assert "lacks x86_64/late-1.0.0-r0.apk" in str(caught.value)


def test_part_checksums_come_from_the_one_hashing_pass(tmp_path: Path) -> None:
    import zlib

    from pakman.digest import MULTIPART_CHUNK

    big = tmp_path / "big.zip"
    data = os.urandom(4 * MULTIPART_CHUNK + 99)
    big.write_bytes(data)
    expected = tuple(
        hashlib.sha256(data[i : i + MULTIPART_CHUNK]).digest()
        for i in range(0, len(data), MULTIPART_CHUNK)
    )
    hashed = hash_file(big, "k")
    assert hashed.part_sha256 == expected
    composite = base64.b64encode(hashlib.sha256(b"".join(expected)).digest()).decode()
    assert hashed.composite_sha256() == f"{composite}-5"
    assert hashed.sha256 == hashlib.sha256(data).hexdigest()
    assert hashed.crc32 == zlib.crc32(data)
    assert hashed.etag is None  # multipart-sized: its ETag depends on the part size
    digests = [
        hashlib.md5(data[i : i + MULTIPART_CHUNK]).digest()
        for i in range(0, len(data), MULTIPART_CHUNK)
    ]
    assert hashed.store_etag() == f"{hashlib.md5(b''.join(digests)).hexdigest()}-5"
    # Read again for a store that keeps no checksum: never the MD5s of other bytes.
    big.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ConfigError, match="changed after it was verified"):
        hashed.store_etag()
    small = tmp_path / "small.apk"
    small.write_bytes(b"abc")
    assert hash_file(small, "s").etag == hashlib.md5(b"abc").hexdigest()
    assert hash_file(small, "s").part_sha256 == ()
    assert hash_file(small, "s").composite_sha256() is None
