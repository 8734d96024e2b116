"""``pakman repo``: a signed apk repository in a bucket or folder, used by real apk.

Real apk-tools 3 in the Alpine 3.23 root installs, upgrades and rolls back over HTTP from
a folder the repository was written to; the S3 cases run against the real S3 server of
the tests, whose conditional writes decide races.
"""

from __future__ import annotations

import re
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey
from pakman import apk, keys, pipeline
from pakman.errors import ConfigError, VerificationError
from pakman.identity import Identity
from pakman.repo import index, repository
from pakman.sign import load_key
from pakman.storage.filestore import FileStore
from pakman.storage.objects import LocalObject
from pakman.trust import trust_pem
from tests.support import docpages
from tests.support.apkrepo import (
    FOLDER,
    _index_with_text,
    _many_records,
    build,
    listed,
)
from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(keys.generate(2048), "acme-app.rsa.pub")


def _add(tree: Path, key: SigningKey, store: Any, keep: int = 1) -> Any:
    from pakman.repo import repository
    from pakman.tree import snapshot

    walked = snapshot(tree)
    trust = trust_pem(key.pair.public_pem, Identity("acme/app"))
    verified = pipeline.verify(tree, walked.paths, trust, "repo", digests=True)
    return repository.add(
        [walked],
        verified.packages,
        store,
        repository.Options("v3.23", keep=keep),
        key_name=key.name,
        public=keys.load_public(key.pair.public_pem),
        private=load_key(key.pair.private_pem),
    )


def _race(tmp_path: Path, key: SigningKey, stores: list[Any]) -> list[Any]:
    trees = [build(tmp_path / f"race-{n}", key, "1.0.0-r0", f"app-{n}") for n in range(2)]
    results: list[Any] = [None, None]

    def run(n: int) -> None:
        results[n] = _add(trees[n], key, stores[n], keep=5)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _run(
    tree: Path,
    key: SigningKey,
    store: Any,
    *,
    keep: int = 5,
    replace: bool = False,
    grace: float = repository.GRACE,
) -> repository.Summary:
    """One ``pakman repo`` run in this process, on a store a test can watch."""
    from pakman.tree import snapshot

    walked = snapshot(tree)
    trust = trust_pem(key.pair.public_pem, Identity("acme/app"))
    verified = pipeline.verify(tree, walked.paths, trust, "repo", digests=True)
    return repository.add(
        [walked],
        verified.packages,
        store,
        repository.Options("v3.23", keep=keep, replace=replace, grace=grace),
        key_name=key.name,
        public=keys.load_public(key.pair.public_pem),
        private=load_key(key.pair.private_pem),
        public_pem=key.pair.public_pem,
    )


class CrashAt(FileStore):
    """The process dies at the ``at``-th write of the index."""

    def __init__(self, root: Path, at: int) -> None:
        super().__init__(root)
        self.at, self.writes = at, 0

    def write_if(self, local: LocalObject, version: str | None) -> bool:
        if local.key.endswith(index.INDEX_NAME):
            self.writes += 1
            if self.writes == self.at:
                raise KeyboardInterrupt  # as a SIGKILL: nothing after it runs
        return super().write_if(local, version)


class RacingFileStore(FileStore):
    """Both runs read the index before either writes it."""

    def __init__(self, root: Path, barrier: threading.Barrier) -> None:
        super().__init__(root)
        self.barrier, self.reads = barrier, 0

    def read_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str] | None:
        found = super().read_versioned(key, limit)
        self.reads += key.endswith(index.INDEX_NAME)
        if self.reads == 1 and key.endswith(index.INDEX_NAME):
            self.barrier.wait(30)
        return found


def test_two_runs_at_once_on_a_folder_never_lose_an_entry(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    barrier = threading.Barrier(2)
    results = _race(tmp_path, key, [RacingFileStore(store, barrier) for _ in range(2)])
    assert sorted(r.conflicts for r in results) == [0, 1]  # one lost, read again, merged
    assert listed(store, key) == ["app-0-1.0.0-r0.apk", "app-1-1.0.0-r0.apk"]


def test_keep_must_be_positive_and_merge_policy_is_pure() -> None:
    from pakman.repo.next_index import merge

    old = {"P": "app", "V": "1.0.0-r0", "C": "Q1a", "S": "1"}
    with pytest.raises(ConfigError, match="--keep: must be at least 1"):
        merge([old], [], keep=0, replace=False, where="x")
    newer = {"P": "app", "V": "1.0.0-r1", "C": "Q1b", "S": "2"}
    merged = merge([old], [newer], keep=1, replace=False, where="x")
    assert (merged.added, merged.pruned) == (("app-1.0.0-r1.apk",), ("app-1.0.0-r0.apk",))
    with pytest.raises(ConfigError, match="would be pruned at once"):
        merge([newer], [old], keep=1, replace=False, where="x")
    with pytest.raises(VerificationError):
        index.read(b"not an index", "x", {})


def test_an_untrusted_index_is_refused_before_its_records_are_parsed(key: SigningKey) -> None:
    stranger = SigningKey(keys.generate(2048), "stranger.rsa.pub")
    data = _index_with_text(stranger, _many_records(150_000))
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    tracemalloc.start()
    try:
        with pytest.raises(VerificationError, match="UNTRUSTED signature"):
            index.read(data, "index", trusted)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The inflated text is ~2.5 MB; 150,000 parsed records would be well over 50 MB.
    assert peak < 20 * 1024 * 1024, peak


def test_packages_left_by_a_killed_run_are_swept_after_the_grace_period(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    _run(build(tmp_path / "1", key, "1.0.0-r0"), key, FileStore(store))
    with pytest.raises(KeyboardInterrupt):
        _run(build(tmp_path / "2", key, "2.0.0-r0"), key, CrashAt(store, 1))
    left = store / FOLDER / "app-2.0.0-r0.apk"
    assert left.exists()
    assert listed(store, key) == ["app-1.0.0-r0.apk"]
    _run(build(tmp_path / "3", key, "1.0.0-r0", "tool"), key, FileStore(store), grace=3600)
    assert left.exists()  # within the grace period: a run may be about to list it
    swept = _run(build(tmp_path / "4", key, "1.0.0-r0", "tool"), key, FileStore(store), grace=0)
    assert swept.deleted[f"{FOLDER}/{index.INDEX_NAME}"] == ["app-2.0.0-r0.apk"]
    assert not left.exists()


def test_the_documented_headers_and_defaults_are_the_ones_used() -> None:
    page = (ROOT / "docs" / "apk-repository.md").read_text()
    assert f"| `APKINDEX.tar.gz` | `{repository.INDEX_CACHE}`" in page
    assert f"| `.apk` | `{repository.PACKAGE_CACHE}`" in page
    assert f"| `keys/*.rsa.pub` | `{repository.KEY_CACHE}`" in page
    assert repository.GRACE == 4 * 3600
    assert "(default `4h`" in page
    assert f"{apk.MAX_RECORDS:,} records" in page
    assert f"{apk.MAX_INFLATED // (1024 * 1024)} MiB" in page
    said = [
        default
        for text in docpages.pages().values()  # the README and every docs/ page
        for default in re.findall(r"\(`--grace`, default (\w+)\)", text)
    ]
    assert said
    assert set(said) == {"4h"}


def test_repo_check_starts_no_read_past_its_deadline() -> None:
    """No request starts after --timeout, and the error names no URL (it may hold a
    password)."""
    import time

    from pakman.errors import PublishError
    from pakman.repo.check import _Client

    late = _Client(time.monotonic() - 1, verify_tls=True)
    with pytest.raises(PublishError, match=r"passed its deadline \(--timeout\)") as refused:
        late.get("https://deployer:s3cr3t-pw@repo.example/alpine/x86_64/APKINDEX.tar.gz")
    assert "s3cr3t-pw" not in str(refused.value)
