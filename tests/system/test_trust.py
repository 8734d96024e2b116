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
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pakman import keys
from pakman.errors import VerificationError
from tests.integration.test_trust import _store_args
from tests.support import rig
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built, build_deployment
from tests.unit.test_trust import _publish, _tamper

NOBODY = 65534  # a second local user


def _old_fact(kind: str, paths: list[Path], *extra: str) -> tuple[str, int]:
    """The "proved before" key the old hash cache trusted: public data only."""
    digest = hashlib.sha256(kind.encode())
    newest = 0
    for path in sorted(paths):
        st = path.stat()
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
        real = os.path.join(os.path.realpath(path.parent), path.name)
        signature = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        digest.update(json.dumps([real, *signature]).encode())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest(), newest


def _packages(built: Built) -> list[Path]:
    return sorted(p for p in built.packages.rglob("*") if p.is_file())


def test_a_cache_planted_by_another_user_is_never_read(
    deployment_files: Built, tmp_path: Path
) -> None:
    """With XDG_CACHE_HOME on a shared folder, another account plants a "verified" fact for
    a tampered tree (computable from paths, stat fields and the key's fingerprint)."""
    rig.need_root()
    shared = tmp_path / "shared-cache"
    (shared / "pakman").mkdir(parents=True)
    _tamper(next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk")))
    fingerprint = keys.fingerprint(deployment_files.public_key.read_bytes())
    proved, newest = _old_fact(
        "verified", _packages(deployment_files), f"acme-app.rsa.pub={fingerprint}"
    )
    planted = shared / "pakman" / "hashes-v3.json"
    planted.write_text(json.dumps({f"fact:{proved}": [newest, time.time_ns() + 10**9]}))
    os.chown(planted, NOBODY, NOBODY)
    os.chown(shared / "pakman", NOBODY, NOBODY)
    store = tmp_path / "store"
    result = run_pakman(*_store_args(deployment_files, store), env={"XDG_CACHE_HOME": str(shared)})
    one_line_error(result, 1, "publish refused: verification failed")
    assert "acme/x86_64/app0-1.0.0-r0.apk" in result.stderr
    assert "verified before" not in result.stderr
    assert not store.exists() or list(store.rglob("*.apk")) == []


@pytest.fixture
def coarse_timestamps(tmp_path: Path) -> Iterator[Path]:
    """A filesystem whose timestamps have 1-second granularity: ext4 with 128-byte inodes
    (as many NFS and FUSE mounts), on a loop device."""
    rig.need_root()
    mkfs = rig.need_tool("mkfs.ext4")
    image = tmp_path / "coarse.img"
    with image.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    subprocess.run([mkfs, "-q", "-F", "-I", "128", str(image)], check=True, capture_output=True)
    mount = tmp_path / "coarse"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_same_second_rewrite_on_a_coarse_filesystem_is_read_again(
    coarse_timestamps: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 1-second timestamps a rewrite in the same second leaves every stat field as it
    was: the old cache took the tree as proved and kept the stale bytes published."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    built = build_deployment(coarse_timestamps / "tree")
    probe = built.packages / "acme" / "x86_64" / "app0-1.0.0-r0.apk"
    assert probe.stat().st_mtime_ns % 1_000_000_000 == 0  # the granularity is real
    # Start 0.2 s into a second: every stamp reads as the second's start, and a run ends
    # well within it (the old cache's 100 ms margin assumed nanosecond stamps).
    while not 0.2 < time.time() % 1 < 0.4:
        time.sleep(0.005)
    for path in _packages(built):  # every file stamped in this same second
        os.utime(path)
    store = tmp_path / "store"
    _publish(built, store)
    _tamper(probe)
    with pytest.raises(VerificationError, match=r"acme/x86_64/app0-1\.0\.0-r0\.apk"):
        _publish(built, store)
