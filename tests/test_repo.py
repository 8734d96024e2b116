"""``pakman repo``: a signed apk repository in a bucket or folder, used by real apk.

Real apk-tools 3 in the Alpine 3.23 root installs, upgrades and rolls back over HTTP from
a folder the repository was written to; the S3 cases run against the real S3 server of
the tests, whose conditional writes decide races.
"""

from __future__ import annotations

import json
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_index, make_package, write_repo
from devkit.s3 import S3Server
from pakman import apk, keys, pipeline
from pakman.apkversion import compare
from pakman.errors import ConfigError, PublishError, VerificationError
from pakman.identity import Identity
from pakman.repo import index, repository
from pakman.storage.filestore import FileStore
from pakman.storage.objects import LocalObject, RemoteObject
from pakman.storage.s3 import S3Store
from tests.support import rig
from tests.support.apkrepo import (
    FOLDER,
    _apk,
    _index_with_text,
    _keys,
    _many_records,
    build,
    listed,
    repo,
)
from tests.support.cli import run_pakman
from tests.support.faults import FaultProxy


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(keys.generate(2048), "acme-app.rsa.pub")


def test_real_apk_installs_upgrades_and_rolls_back_from_the_repository(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay, http_root: tuple[Path, str]
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    for version in ("1.0.0-r0", "2.0.0-r0"):
        done = repo(tmp_path, key, build(tmp_path / version, key, version), store)
        assert done.returncode == 0, done.stderr
    added = _apk(alpine, url, "add app=1.0.0-r0")
    assert added.returncode == 0, added.stdout + added.stderr
    assert alpine.run("cat /usr/share/app/version").stdout == "1.0.0-r0"
    upgraded = _apk(alpine, url, "add app")  # drop the pin: the newest
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert _apk(alpine, url, "upgrade").returncode == 0
    assert alpine.run("cat /usr/share/app/version").stdout == "2.0.0-r0"
    back = _apk(alpine, url, "add app=1.0.0-r0")  # roll back, within --keep
    assert back.returncode == 0, back.stdout + back.stderr
    assert alpine.run("cat /usr/share/app/version").stdout == "1.0.0-r0"
    # A third release with --keep 2 and no grace: 1.0.0 leaves the index and the folder.
    third = repo(
        tmp_path, key, build(tmp_path / "3", key, "3.0.0-r0"), store, "--keep", "2", "--grace", "0"
    )
    assert third.returncode == 0, third.stderr
    assert listed(store, key) == ["app-2.0.0-r0.apk", "app-3.0.0-r0.apk"]
    assert not (store / FOLDER / "app-1.0.0-r0.apk").exists()
    latest = _apk(alpine, url, "add app=3.0.0-r0")
    assert latest.returncode == 0, latest.stdout + latest.stderr
    assert alpine.run("cat /usr/share/app/version").stdout == "3.0.0-r0"
    assert _apk(alpine, url, "add app=1.0.0-r0").returncode != 0  # pruned: no longer there


def test_real_apk_refuses_the_repository_with_another_key(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay, http_root: tuple[Path, str]
) -> None:
    store, url = http_root
    assert repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store).returncode == 0
    other = SigningKey(keys.generate(2048), "acme-app.rsa.pub")  # the same name, another key
    alpine.bind(other.write_public(tmp_path / "other").parent, "/work/other", readonly=True)
    refused = _apk(alpine, url, "add app", keys_dir="/work/other")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "BAD signature" in said  # a key of that name, but not the one that signed
    assert "app (no such package)" in said
    assert alpine.run("test -e /usr/share/app/version", check=False).returncode != 0


def test_the_index_is_what_apk_index_writes_and_verifies_with_real_apk(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    store = tmp_path / "store"
    tree = tmp_path / "t"
    packages = [
        make_package(key, "app", "1.0.0-r0", "x86_64", depends=("so:libc.musl-x86_64.so.1",)),
        make_package(key, "app-data", "1.0.0-r0", "noarch"),
    ]
    write_repo(tree / "acme", key, packages, "x86_64")
    done = repo(tmp_path, key, tree, store)
    assert done.returncode == 0, done.stderr
    alpine.bind(store, "/work/store", readonly=True)
    alpine.bind(tmp_path / "keys", "/work/keys", readonly=True)
    verified = alpine.run(f"apk --keys-dir /work/keys verify /work/store/{FOLDER}/*")
    assert verified.stdout.count(": OK") == 3
    data = (store / FOLDER / "APKINDEX.tar.gz").read_bytes()
    records = apk.parse_index(data, Path("index")).records
    assert [r["P"] for r in records] == ["app", "app-data"]
    assert [r["A"] for r in records] == ["x86_64", "x86_64"]  # noarch listed as the arch
    assert records[0]["D"] == "so:libc.musl-x86_64.so.1"
    assert list(records[0]) == [k for k in index.FIELDS if k in records[0]]  # apk's order


def test_an_index_signed_by_another_key_is_refused(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    other = SigningKey(keys.generate(2048), "someone-else.rsa.pub")
    planted = store / FOLDER / "APKINDEX.tar.gz"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(make_index(other, [make_package(other, "evil", "9.9.9-r0")]))
    result = repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store)
    assert result.returncode == 1, result.stderr
    assert "UNTRUSTED signature" in result.stderr
    assert "refusing to add to it" in result.stderr
    assert not (store / FOLDER / "app-1.0.0-r0.apk").exists()


def test_a_version_is_never_changed_in_place_unless_replaced(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    first = build(tmp_path / "a", key, "1.0.0-r0")
    assert repo(tmp_path, key, first, store).returncode == 0
    same = repo(tmp_path, key, first, store, "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["indexes"][f"{FOLDER}/APKINDEX.tar.gz"]["unchanged"] == [
        "app-1.0.0-r0.apk"
    ]
    rebuilt = tmp_path / "b"  # the same version built again, with other contents
    other = make_package(key, "app", "1.0.0-r0", files={"usr/share/app/version": b"other"})
    write_repo(rebuilt / "acme", key, [other])
    refused = repo(tmp_path, key, rebuilt, store)
    assert refused.returncode == 2, refused.stderr
    assert "app-1.0.0-r0.apk is already in the repository with other bytes" in refused.stderr
    replaced = repo(tmp_path, key, rebuilt, store, "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    changes = json.loads(replaced.stdout)["indexes"][f"{FOLDER}/APKINDEX.tar.gz"]
    assert (changes["added"], changes["replaced"]) == ([], ["app-1.0.0-r0.apk"])
    stored = (store / FOLDER / "app-1.0.0-r0.apk").read_bytes()
    assert stored == (rebuilt / "acme" / "x86_64" / "app-1.0.0-r0.apk").read_bytes()


def test_dry_run_prints_what_would_change_and_writes_nothing(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    for version in ("1.0.0-r0", "2.0.0-r0"):
        assert repo(tmp_path, key, build(tmp_path / version, key, version), store).returncode == 0
    before = sorted(p.name for p in (store / FOLDER).iterdir())
    plan = repo(
        tmp_path,
        key,
        build(tmp_path / "3", key, "3.0.0-r0"),
        store,
        "--keep",
        "2",
        "--dry-run",
        "--json",
    )
    assert plan.returncode == 0, plan.stderr
    result = json.loads(plan.stdout)
    assert (result["ok"], result["dry_run"]) == (True, True)
    assert result["indexes"][f"{FOLDER}/APKINDEX.tar.gz"] == {
        "added": ["app-3.0.0-r0.apk"],
        "unchanged": [],
        "replaced": [],
        "kept": ["app-2.0.0-r0.apk", "app-3.0.0-r0.apk"],
        "pruned": ["app-1.0.0-r0.apk"],
        "deleted": [],
    }
    assert sorted(p.name for p in (store / FOLDER).iterdir()) == before
    text = repo(
        tmp_path, key, build(tmp_path / "3b", key, "3.0.0-r0"), store, "--keep", "2", "--dry-run"
    )
    assert "would add 1, replace 0, keep 2, prune 1, delete 0" in text.stdout


def test_the_private_key_never_reaches_output_or_storage(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    done = repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store, "--json")
    wrong = tmp_path / "wrong.rsa"
    wrong.write_bytes(keys.generate(2048).private_pem)
    public, _ = _keys(tmp_path, key)
    mismatch = run_pakman(
        "repo", str(tmp_path / "1"), "--key", str(public), "--private-key", str(wrong),
        "--store", f"file://{store}", "--json",
    )  # fmt: skip
    assert mismatch.returncode == 2
    assert "--key: does not match --private-key" in mismatch.stderr
    body = key.pair.private_pem.decode().splitlines()[1]
    for result in (done, mismatch):
        assert body not in result.stdout + result.stderr
        assert "PRIVATE KEY" not in result.stdout + result.stderr
    for path in store.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes()
            assert body.encode() not in path.read_bytes()


# --- crashes and races ---------------------------------------------------------------


class Crash(Exception):
    """The process dies here."""


class CrashingStore(FileStore):
    def __init__(self, root: Path, at: str) -> None:
        super().__init__(root)
        self.at = at

    def write_if(self, local: LocalObject, version: str | None) -> bool:
        if not local.key.endswith(index.INDEX_NAME):
            return super().write_if(local, version)  # the probe of conditional writes
        if self.at == "before the index":
            raise Crash
        written = super().write_if(local, version)
        if self.at == "after the index":
            raise Crash
        return written


def _add(tree: Path, key: SigningKey, store: Any, keep: int = 1) -> Any:
    from pakman.repo import repository
    from pakman.tree import snapshot

    walked = snapshot(tree)
    trust = pipeline.trust_pem(key.pair.public_pem, Identity("acme/app"))
    verified = pipeline.verify(tree, walked.paths, trust, "repo", digests=True)
    return repository.add(
        [walked],
        verified.packages,
        store,
        repository.Options("v3.23", keep=keep),
        key_name=key.name,
        public=keys.load_public(key.pair.public_pem),
        private_pem=key.pair.private_pem,
    )


@pytest.mark.parametrize("at", ["before the index", "after the index"])
def test_a_run_killed_at_any_step_leaves_a_repository_apk_can_use(
    at: str, tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    store = tmp_path / "store"
    _add(build(tmp_path / "1", key, "1.0.0-r0"), key, FileStore(store))
    with pytest.raises(Crash):
        _add(build(tmp_path / "2", key, "2.0.0-r0"), key, CrashingStore(store, at))
    # Packages went first; the index is the old or the new one, never a half.
    expected = ["app-1.0.0-r0.apk"] if at == "before the index" else ["app-2.0.0-r0.apk"]
    assert listed(store, key) == expected
    for name in expected:
        assert (store / FOLDER / name).exists()
    key.write_public(tmp_path / "keys")
    alpine.bind(store, "/work/store", readonly=True)
    alpine.bind(tmp_path / "keys", "/work/keys", readonly=True)
    installed = alpine.run(
        "apk add --repositories-file /dev/null --repository /work/store/alpine/v3.23/acme"
        " --keys-dir /work/keys app && cat /usr/share/app/version"
    )
    assert installed.stdout.endswith(expected[0].removeprefix("app-").removesuffix(".apk"))
    # And the next run finishes the job.
    _add(build(tmp_path / "2b", key, "2.0.0-r0"), key, FileStore(store))
    assert listed(store, key) == ["app-2.0.0-r0.apk"]


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


def test_two_runs_at_once_on_a_folder_never_lose_an_entry(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    barrier = threading.Barrier(2)
    results = _race(tmp_path, key, [RacingFileStore(store, barrier) for _ in range(2)])
    assert sorted(r.conflicts for r in results) == [0, 1]  # one lost, read again, merged
    assert listed(store, key) == ["app-0-1.0.0-r0.apk", "app-1-1.0.0-r0.apk"]


def test_two_runs_at_once_on_s3_never_lose_an_entry(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str
) -> None:
    from pakman.storage.s3 import S3Store

    barrier = threading.Barrier(2)

    class RacingS3(S3Store):
        reads = 0

        def read_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str] | None:
            found = super().read_versioned(key, limit)
            if not key.endswith(index.INDEX_NAME):
                return found
            RacingS3.reads += 1
            if RacingS3.reads <= 2:
                barrier.wait(30)
            return found

    stores = [
        RacingS3(
            bucket, s3_server.endpoint, None, s3_server.access_key_id, s3_server.secret_access_key
        )
        for _ in range(2)
    ]
    results = _race(tmp_path, key, stores)
    assert sorted(r.conflicts for r in results) == [0, 1]  # If-None-Match decided it
    data = (
        s3_server.client().get_object(Bucket=bucket, Key=f"{FOLDER}/APKINDEX.tar.gz")["Body"].read()
    )
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    names = sorted(index.filename(r) for r in index.read(data, "index", trusted))
    assert names == ["app-0-1.0.0-r0.apk", "app-1-1.0.0-r0.apk"]


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


# --- apk's version order -------------------------------------------------------------

VERSIONS = [
    "1.0",
    "1.0.0",
    "1.0.1",
    "1.0.10",
    "1.0.9",
    "1.01",
    "1.1",
    "1.001",
    "1.10",
    "0.9",
    "0.10",
    "1.0_rc1",
    "1.0_rc2",
    "1.0_alpha",
    "1.0_beta1",
    "1.0_pre",
    "1.0_p1",
    "1.0_p2",
    "1.0_git20240101",
    "1.0_svn",
    "1.0_cvs",
    "1.0_hg",
    "1.0a",
    "1.0b",
    "1.0-r1",
    "1.0-r2",
    "1.0_rc1-r1",
    "1.0_p1_p2",
    "1.0_rc1_p1",
    "2",
    "2.0",
    "10.0",
    "1.0.0_rc1",
    "1.2.3-r0",
    "1.2.3-r10",
    "1.2.3-r9",
    "1.2.3a-r0",
    "1.2.3_rc1-r3",
    "0.0.0",
    "0.0.1",
    "1.00",
    "1.0_alpha_beta",
    "1.0_p",
    "1.0_p0",
    "1.0~abc1234-r0",
    "1.0~abc1235",
    "1.0~ab",
    "1.0~0",
    "1.0~00",
    "1.0~9",
    "1.0~a-r1",
    "1.0_rc1~ff",
    "1.0a~ff",
]


def test_version_order_is_the_real_apks(alpine: rig.Overlay) -> None:
    pairs = [(a, b) for a in VERSIONS for b in VERSIONS]
    script = "; ".join(f"apk version -t {a} {b}" for a, b in pairs)
    answers = alpine.run(script).stdout.split()
    assert len(answers) == len(pairs)
    mine = [{-1: "<", 0: "=", 1: ">"}[compare(a, b)] for a, b in pairs]
    differ = [
        (a, b, real, own)
        for (a, b), real, own in zip(pairs, answers, mine, strict=True)
        if real != own
    ]
    assert differ == []


def test_the_branch_comes_from_the_configs_stack(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    config = tmp_path / "instellar.yml"
    config.write_text("stack: alpine/3.20\ntype: static\ndependencies: {}\nbuild: {command: x}\n")
    public, private = _keys(tmp_path, key)
    done = run_pakman(
        "repo", str(build(tmp_path / "1", key, "1.0.0-r0")), "--key", str(public),
        "--private-key", str(private), "--store", f"file://{store}", "--create-bucket",
        "--config", str(config), "--prefix", "pkgs/alpine",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (store / "pkgs/alpine/v3.20/acme/x86_64/APKINDEX.tar.gz").is_file()
    unsafe = run_pakman(
        "repo", str(tmp_path / "1"), "--key", str(public), "--private-key", str(private),
        "--store", f"file://{store}", "--prefix", "../elsewhere",
    )  # fmt: skip
    assert unsafe.returncode == 2
    assert "--prefix: must be a relative path of safe names" in unsafe.stderr
    bad = run_pakman(
        "repo", str(tmp_path / "1"), "--key", str(public), "--private-key", str(private),
        "--store", f"file://{store}", "--branch", "v3.23/../x",
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --branch: not an Alpine version"), bad.stderr


# --- an index never vouches for bytes the bucket does not hold ------------------------------


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
    trust = pipeline.trust_pem(key.pair.public_pem, Identity("acme/app"))
    verified = pipeline.verify(tree, walked.paths, trust, "repo", digests=True)
    return repository.add(
        [walked],
        verified.packages,
        store,
        repository.Options("v3.23", keep=keep, replace=replace, grace=grace),
        key_name=key.name,
        public=keys.load_public(key.pair.public_pem),
        private_pem=key.pair.private_pem,
        public_pem=key.pair.public_pem,
    )


def _installs(alpine: rig.Overlay, url: str, spec: str, expect: str) -> None:
    done = _apk(alpine, url, f"add {spec}")
    assert done.returncode == 0, done.stdout + done.stderr
    name = spec.split("=")[0]
    assert alpine.run(f"cat /usr/share/{name}/version").stdout == expect


@pytest.mark.parametrize("damage", ["deleted", "overwritten"])
def test_a_rerun_repairs_a_listed_package_storage_lost(
    damage: str,
    tmp_path: Path,
    key: SigningKey,
    alpine: rig.Overlay,
    http_root: tuple[Path, str],
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    tree = build(tmp_path / "1", key, "1.0.0-r0")
    assert repo(tmp_path, key, tree, store).returncode == 0
    stored = store / FOLDER / "app-1.0.0-r0.apk"
    if damage == "deleted":
        stored.unlink()
    else:
        other = make_package(key, "app", "1.0.0-r0", files={"usr/share/app/version": b"evil!!!!"})
        stored.write_bytes(other.data)
    again = repo(tmp_path, key, tree, store)
    assert again.returncode == 0, again.stderr
    _installs(alpine, url, "app", "1.0.0-r0")


def test_a_listed_package_storage_lost_fails_a_run_without_its_bytes(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    assert repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store).returncode == 0
    (store / FOLDER / "app-1.0.0-r0.apk").unlink()
    other = repo(tmp_path, key, build(tmp_path / "2", key, "1.0.0-r0", "tool"), store)
    assert other.returncode == 1, other.stderr
    assert "lists app-1.0.0-r0.apk, which storage no longer holds" in other.stderr
    assert listed(store, key) == ["app-1.0.0-r0.apk"]  # the index was not changed


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


@pytest.mark.parametrize("at", [1, 2])
def test_replace_killed_at_any_index_write_leaves_a_repository_apk_can_use(
    at: int,
    tmp_path: Path,
    key: SigningKey,
    alpine: rig.Overlay,
    http_root: tuple[Path, str],
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    _run(build(tmp_path / "0", key, "0.9.0-r0"), key, FileStore(store))
    _run(build(tmp_path / "1", key, "1.0.0-r0"), key, FileStore(store))
    rebuilt = tmp_path / "b"
    other = make_package(key, "app", "1.0.0-r0", files={"usr/share/app/version": b"rebuilt"})
    write_repo(rebuilt / "acme", key, [other])
    with pytest.raises(KeyboardInterrupt):
        _run(rebuilt, key, CrashAt(store, at), replace=True)
    # Whatever the index lists, apk installs: the newest it lists, with its own bytes.
    names = listed(store, key)
    assert "app-0.9.0-r0.apk" in names
    if "app-1.0.0-r0.apk" in names:
        _installs(alpine, url, "app", "1.0.0-r0")
    else:
        _installs(alpine, url, "app", "0.9.0-r0")
    # And the next run finishes the job.
    _run(rebuilt, key, FileStore(store), replace=True)
    alpine.run("apk del app")
    _installs(alpine, url, "app=1.0.0-r0", "rebuilt")


def _prune_races_rollback(
    make_store: Callable[[type], Any], kind: type, tmp_path: Path, key: SigningKey
) -> list[BaseException]:
    """Run D adds 3.0 with --keep 2 and no grace (1.0 leaves the index and storage);
    run R adds 1.0 back. The worst order: R reads the index D committed and finds the
    file of 1.0 still there (so does not send it) before D deletes it, then commits."""
    for version in ("1.0.0-r0", "2.0.0-r0"):
        _run(build(tmp_path / version, key, version), key, make_store(kind))
    d_committed, r_headed, d_deleted = threading.Event(), threading.Event(), threading.Event()

    class Deleter(kind):  # type: ignore[misc]
        def write_if(self, local: LocalObject, version: str | None) -> bool:
            written = super().write_if(local, version)
            if written and local.key.endswith(index.INDEX_NAME):
                d_committed.set()
            return bool(written)

        def delete(self, key: str) -> None:
            if key.endswith(".apk"):
                r_headed.wait(1)
            super().delete(key)
            if key.endswith(".apk"):
                d_deleted.set()

    class Rollback(kind):  # type: ignore[misc]
        def read_versioned(self, key: str, limit: int | None = None) -> Any:
            if key.endswith(index.INDEX_NAME):
                d_committed.wait(5)
            return super().read_versioned(key, limit)

        def matches(self, local: LocalObject, remote: RemoteObject) -> bool:
            held = bool(super().matches(local, remote))
            if local.key.endswith("app-1.0.0-r0.apk"):
                r_headed.set()  # R found the file in place: it will not send it
                d_deleted.wait(3)
            return held

    errors: list[BaseException] = []

    def go(body: Callable[[], object]) -> None:
        try:
            body()
        except BaseException as error:  # reported by the test
            errors.append(error)

    deleter, rollback = make_store(Deleter), make_store(Rollback)
    three, back = build(tmp_path / "3", key, "3.0.0-r0"), build(tmp_path / "1b", key, "1.0.0-r0")
    runs = [
        threading.Thread(target=go, args=(lambda: _run(three, key, deleter, keep=2, grace=0),)),
        threading.Thread(target=go, args=(lambda: _run(back, key, rollback),)),
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    return errors


def _every_listed_package_is_held(
    data: bytes, key: SigningKey, fetch: Callable[[str], bytes]
) -> None:
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    for record in index.read(data, "index", trusted):
        name = index.filename(record)
        body = fetch(name)
        assert body, f"the index lists {name}, which storage does not hold"
        assert str(len(body)) == record["S"], name


@pytest.mark.parametrize("rounds", [4])
def test_pruning_races_a_rollback_on_a_folder_in_a_loop(
    rounds: int, tmp_path: Path, key: SigningKey
) -> None:
    for round_ in range(rounds):
        root = tmp_path / f"store-{round_}"

        def store(kind: type, root: Path = root) -> Any:
            return kind(root)

        errors = _prune_races_rollback(store, FileStore, tmp_path / f"round-{round_}", key)
        assert errors == []
        data = (root / FOLDER / index.INDEX_NAME).read_bytes()
        assert "app-1.0.0-r0.apk" in listed(root, key)

        def fetch(name: str, root: Path = root) -> bytes:
            path = root / FOLDER / name
            return path.read_bytes() if path.exists() else b""

        _every_listed_package_is_held(data, key, fetch)


def test_pruning_races_a_rollback_on_s3_in_a_loop(
    tmp_path: Path, key: SigningKey, s3_server: S3Server
) -> None:
    client = s3_server.client()
    for round_ in range(3):
        bucket = f"race-prune-{round_}-{time.monotonic_ns() % 10**9}"
        client.create_bucket(Bucket=bucket)

        def store(kind: type, bucket: str = bucket) -> Any:
            return kind(
                bucket,
                s3_server.endpoint,
                None,
                s3_server.access_key_id,
                s3_server.secret_access_key,
            )

        errors = _prune_races_rollback(store, S3Store, tmp_path / f"s3-{round_}", key)
        assert errors == []
        data = client.get_object(Bucket=bucket, Key=f"{FOLDER}/{index.INDEX_NAME}")["Body"].read()

        def fetch(name: str, bucket: str = bucket) -> bytes:
            try:
                body = client.get_object(Bucket=bucket, Key=f"{FOLDER}/{name}")["Body"].read()
                return bytes(body)
            except client.exceptions.NoSuchKey:
                return b""

        _every_listed_package_is_held(data, key, fetch)
        trusted = {key.name: keys.load_public(key.pair.public_pem)}
        names = {index.filename(r) for r in index.read(data, "index", trusted)}
        assert "app-1.0.0-r0.apk" in names


def test_a_commit_hash_version_is_ordered_as_apk_orders_it(
    tmp_path: Path,
    key: SigningKey,
    alpine: rig.Overlay,
    http_root: tuple[Path, str],
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    for version in ("1.0~abc1234-r0", "1.0-r1", "1.0~abc1235-r0"):
        done = repo(tmp_path, key, build(tmp_path / version, key, version), store)
        assert done.returncode == 0, done.stderr
    _installs(alpine, url, "app", "1.0~abc1235-r0")  # what apk takes as the newest
    pruned = repo(
        tmp_path, key, build(tmp_path / "2", key, "2.0-r0"), store, "--keep", "2", "--grace", "0"
    )
    assert pruned.returncode == 0, pruned.stderr
    assert listed(store, key) == ["app-1.0~abc1235-r0.apk", "app-2.0-r0.apk"]


def test_a_version_apk_refuses_is_refused_before_anything_is_written(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    assert alpine.run("apk version -c 1.0_foo-r0", check=False).returncode != 0
    store = tmp_path / "store"
    refused = repo(tmp_path, key, build(tmp_path / "1", key, "1.0_foo-r0"), store)
    assert refused.returncode == 1, refused.stderr
    assert "pkgver '1.0_foo-r0' is not a version apk accepts" in refused.stderr
    assert not [p for p in store.rglob("*") if p.is_file()]


def test_a_noarch_folder_is_listed_in_every_arch_index(
    tmp_path: Path,
    key: SigningKey,
    alpine: rig.Overlay,
    http_root: tuple[Path, str],
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    assert repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store).returncode == 0
    tree = tmp_path / "noarch"
    data = make_package(
        key, "app-data", "1.0.0-r0", "noarch", files={"usr/share/app-data/version": b"data"}
    )
    write_repo(tree / "acme", key, [data], "noarch")
    done = repo(tmp_path, key, tree, store)  # the repository's x86_64 takes it
    assert done.returncode == 0, done.stderr
    _installs(alpine, url, "app-data", "data")
    lone = repo(tmp_path, key, tree, tmp_path / "empty")
    assert lone.returncode == 2
    assert "acme/noarch: apk reads only <arch>/APKINDEX.tar.gz" in lone.stderr


def _wrong_arch_tree(top: Path, key: SigningKey) -> Path:
    package = make_package(key, "app", "1.0.0-r0", "aarch64")
    write_repo(top / "acme", key, [package], "x86_64")
    return top


def test_repo_refuses_a_package_of_another_arch(tmp_path: Path, key: SigningKey) -> None:
    store = tmp_path / "store"
    refused = repo(tmp_path, key, _wrong_arch_tree(tmp_path / "t", key), store)
    assert refused.returncode == 1, refused.stderr
    assert (
        "acme/x86_64/app-1.0.0-r0.apk: its .PKGINFO arch is aarch64, not x86_64 (its folder)"
        in refused.stderr
    )
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_two_trees_with_other_bytes_under_one_name_are_refused(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    first = build(tmp_path / "a", key, "1.0.0-r0")
    second = tmp_path / "b"
    other = make_package(key, "app", "1.0.0-r0", files={"usr/share/app/version": b"other"})
    write_repo(second / "acme", key, [other])
    public, private = _keys(tmp_path, key)
    refused = run_pakman(
        "repo", str(first), str(second), "--key", str(public), "--private-key", str(private),
        "--store", f"file://{store}", "--create-bucket", "--branch", "v3.23",
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "acme/x86_64/app-1.0.0-r0.apk: conflict:" in refused.stderr
    assert not (store / FOLDER).exists()


def test_a_cr_in_pkginfo_never_makes_a_field_apk_index_would_not(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    sneaky = make_package(key, "app", "1.0.0-r0", description="nice\rdepend = evil-backdoor")
    tree = tmp_path / "t"
    write_repo(tree / "acme", key, [sneaky])
    store = tmp_path / "store"
    done = repo(tmp_path, key, tree, store)
    assert done.returncode == 0, done.stderr
    ours = apk.parse_index((store / FOLDER / index.INDEX_NAME).read_bytes(), Path("i")).records
    alpine.bind(tree / "acme" / "x86_64", "/work/t", readonly=True)
    alpine.run("apk index --allow-untrusted -o /tmp/index.tar.gz /work/t/app-1.0.0-r0.apk")
    with tarfile.open(alpine.upper / "tmp" / "index.tar.gz") as written:  # unsigned
        member = written.extractfile("APKINDEX")
        assert member is not None
        real = apk.parse_index_text(member.read().decode())
    assert "D" not in real[0]
    assert real[0]["T"] == "nice\rdepend = evil-backdoor"
    assert ours[0].get("D") == real[0].get("D")
    assert ours[0]["T"] == real[0]["T"]


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


def test_a_signed_index_with_too_many_records_is_refused(tmp_path: Path, key: SigningKey) -> None:
    data = _index_with_text(key, _many_records(apk.MAX_RECORDS + 1))
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    with pytest.raises(VerificationError, match="holds more than 200000 records"):
        index.read(data, "index", trusted)
    planted = tmp_path / "store" / FOLDER / index.INDEX_NAME
    planted.parent.mkdir(parents=True)
    planted.write_bytes(data)
    refused = repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), tmp_path / "store")
    assert refused.returncode == 1, refused.stderr
    assert "holds more than 200000 records" in refused.stderr


def test_an_oversized_index_object_is_refused_without_reading_it(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str
) -> None:
    import subprocess
    import sys

    huge = tmp_path / "huge"
    with huge.open("wb") as handle:  # sparse: the test process never holds it either
        handle.write(b"\x1f\x8b")
        handle.truncate(200 * 1024 * 1024)
    with huge.open("rb") as body:
        s3_server.client().put_object(Bucket=bucket, Key=f"{FOLDER}/{index.INDEX_NAME}", Body=body)
    public, private = _keys(tmp_path, key)
    tree = build(tmp_path / "1", key, "1.0.0-r0")
    script = (
        "import sys\n"
        "from pakman.cli import main\n"
        "code = main(sys.argv[1:])\n"
        # VmHWM: this process's peak since exec (ru_maxrss keeps the forking parent's)
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('peak', peak.split()[1], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "repo", str(tree), "--key", str(public),
         "--private-key", str(private), "--bucket", bucket, "--endpoint", s3_server.endpoint,
         "--branch", "v3.23"],
        capture_output=True, text=True, env=s3_server.env(), timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr
    assert "is larger than 64 MiB" in done.stderr
    peak_kib = int(done.stderr.rsplit("peak ", 1)[1].split()[0])
    assert peak_kib < 150 * 1024, peak_kib  # the body is 200 MiB


def test_a_lock_link_planted_in_a_file_store_is_never_followed(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    outside = tmp_path / "outside" / "created-by-pakman"
    outside.parent.mkdir()
    (store / FOLDER).mkdir(parents=True)
    (store / FOLDER / ".pakman-lock").symlink_to(outside)
    refused = repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store)
    assert refused.returncode == 3, refused.stderr
    assert ".pakman-lock" in refused.stderr
    assert "is it a link?" in refused.stderr
    assert not outside.exists()


def test_objects_carry_cache_headers_for_cdns(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str
) -> None:
    store = S3Store(
        bucket, s3_server.endpoint, None, s3_server.access_key_id, s3_server.secret_access_key
    )
    _run(build(tmp_path / "1", key, "1.0.0-r0"), key, store)
    client = s3_server.client()

    def cache(name: str) -> str:
        return str(client.head_object(Bucket=bucket, Key=name).get("CacheControl"))

    assert cache(f"{FOLDER}/{index.INDEX_NAME}") == "no-cache"
    assert cache(f"{FOLDER}/app-1.0.0-r0.apk") == "public, max-age=31536000, immutable"
    assert cache(f"alpine/keys/{key.name}") == "no-cache"


def test_the_public_key_is_beside_the_repository_and_checked(
    tmp_path: Path, key: SigningKey
) -> None:
    store = tmp_path / "store"
    assert repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store).returncode == 0
    published = store / "alpine" / "keys" / key.name
    assert (
        keys.load_public(published.read_bytes(), "k").public_numbers()
        == keys.load_public(key.pair.public_pem, "k").public_numbers()
    )
    again = repo(tmp_path, key, build(tmp_path / "2", key, "2.0.0-r0"), store)
    assert again.returncode == 0, again.stderr
    other = SigningKey(keys.generate(2048), key.name)
    published.write_bytes(other.pair.public_pem)
    refused = repo(tmp_path, key, build(tmp_path / "3", key, "3.0.0-r0"), store)
    assert refused.returncode == 1, refused.stderr
    assert f"alpine/keys/{key.name}: the repository's public key is another key" in refused.stderr


def test_a_pruned_package_stays_downloadable_for_the_grace_period(
    tmp_path: Path,
    key: SigningKey,
    alpine: rig.Overlay,
    http_root: tuple[Path, str],
) -> None:
    store, url = http_root
    public, _ = _keys(tmp_path, key)
    alpine.bind(public.parent, "/work/keys", readonly=True)
    repository_line = f"{url}/alpine/v3.23/acme"
    alpine.put("/etc/apk/repositories", repository_line + "\n")
    for version in ("1.0.0-r0", "2.0.0-r0"):
        assert repo(tmp_path, key, build(tmp_path / version, key, version), store).returncode == 0
    assert alpine.run("apk update --keys-dir /work/keys", check=False).returncode == 0
    # 3.0 with --keep 2: 1.0 leaves the index, but a host that fetched it before still
    # installs 1.0 from the index it holds, for the grace period.
    third = repo(tmp_path, key, build(tmp_path / "3", key, "3.0.0-r0"), store, "--keep", "2")
    assert third.returncode == 0, third.stderr
    assert listed(store, key) == ["app-2.0.0-r0.apk", "app-3.0.0-r0.apk"]
    cached = alpine.run("apk add --keys-dir /work/keys app=1.0.0-r0", check=False)
    assert cached.returncode == 0, cached.stdout + cached.stderr
    # A later run, once the grace period is over, deletes it.
    time.sleep(1.1)
    later = repo(
        tmp_path, key, build(tmp_path / "4", key, "3.0.0-r0"), store, "--keep", "2", "--grace", "1s"
    )
    assert later.returncode == 0, later.stderr
    assert "deleted app-1.0.0-r0.apk" in later.stdout
    assert not (store / FOLDER / "app-1.0.0-r0.apk").exists()


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


def test_a_store_that_ignores_conditional_writes_is_refused(
    tmp_path: Path, key: SigningKey, moto: S3Server
) -> None:
    moto.client().create_bucket(Bucket="ignores-conditions")
    proxy = FaultProxy(moto.port, "unconditional").start()
    try:
        store = S3Store(
            "ignores-conditions", proxy.endpoint, None, moto.access_key_id, moto.secret_access_key
        )
        with pytest.raises(PublishError, match=r"ignores conditional writes \(If-None-Match"):
            _run(build(tmp_path / "1", key, "1.0.0-r0"), key, store)
        direct = S3Store(
            "ignores-conditions", moto.endpoint, None, moto.access_key_id, moto.secret_access_key
        )
        assert direct.list("alpine/") == {}  # nothing written before the probe refused it
        _run(build(tmp_path / "1", key, "1.0.0-r0"), key, direct)  # honoured: accepted
    finally:
        proxy.stop()


def test_the_index_with_pakmans_state_is_one_real_apk_verifies(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    store = tmp_path / "store"
    assert repo(tmp_path, key, build(tmp_path / "1", key, "1.0.0-r0"), store).returncode == 0
    data = (store / FOLDER / index.INDEX_NAME).read_bytes()
    assert "PAKMAN-STATE" in apk.parse_index(data, Path("i")).others
    alpine.bind(store, "/work/store", readonly=True)
    alpine.bind(tmp_path / "keys", "/work/keys", readonly=True)
    checked = alpine.run(f"apk --keys-dir /work/keys verify /work/store/{FOLDER}/APKINDEX.tar.gz")
    assert ": OK" in checked.stdout


def test_the_documented_headers_and_defaults_are_the_ones_used() -> None:
    page = (Path(__file__).parent.parent / "docs" / "apk-repository.md").read_text()
    assert f"| `APKINDEX.tar.gz` | `{repository.INDEX_CACHE}`" in page
    assert f"| `.apk` | `{repository.PACKAGE_CACHE}`" in page
    assert f"| `keys/*.rsa.pub` | `{repository.KEY_CACHE}`" in page
    assert repository.GRACE == 4 * 3600
    assert "(default `4h`" in page
    assert f"{apk.MAX_RECORDS:,} records" in page
    assert f"{apk.MAX_INFLATED // (1024 * 1024)} MiB" in page
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "(`--grace`, default 4h)" in readme
