"""``pakman repo``: a signed apk repository in a bucket or folder, used by real apk.

Real apk-tools 3 in the Alpine 3.23 root installs, upgrades and rolls back over HTTP from
a folder the repository was written to; the S3 cases run against the real S3 server of
the tests, whose conditional writes decide races.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_index, make_package, write_repo
from devkit.s3 import S3Server
from pakman import apk, keys
from pakman.errors import PublishError, VerificationError
from pakman.repo import index
from pakman.storage.filestore import FileStore
from pakman.storage.objects import LocalObject, RemoteObject
from pakman.storage.s3 import S3Store
from tests.support.apkrepo import (
    FOLDER,
    _index_with_text,
    _keys,
    _many_records,
    build,
    listed,
    repo,
)
from tests.support.cli import run_pakman
from tests.support.faults import FaultProxy
from tests.unit.test_repo import _race, _run


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(keys.generate(2048), "acme-app.rsa.pub")


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


# --- apk's version order -------------------------------------------------------------


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
