"""``pakman repo``, round 2: an index never vouches for bytes the bucket does not hold.

Each numbered case of issue 27 is reproduced as a host meets it (real apk-tools 3 over
HTTP from the Alpine root) or as the store behaves (the real S3 server); races run in
loops, each round on a fresh repository.
"""

from __future__ import annotations

import tarfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.s3 import S3Server
from pakman import apk, keys, pipeline
from pakman.errors import PublishError, VerificationError
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


# --- 1. a package the index lists is re-checked in storage -------------------------------


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


# --- 2. --replace: the old bytes leave the index before the new ones are sent -----------


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


# --- 3. pruning never races a run that brings the package back ---------------------------


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


# --- 4. versions: apk's ~hash order, and versions apk refuses -----------------------------


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


# --- 9. noarch packages in every arch's index ---------------------------------------------


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


# --- 10 and issue 24.3: a package of another arch in an arch folder ---------------------


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


# --- 11. one file name, two trees, other bytes ---------------------------------------------


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


# --- 14. lines end at \n only --------------------------------------------------------------


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


# --- 7. an index not signed by the key costs nothing to refuse ---------------------------


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


# --- 6. the index GET is capped as it streams ---------------------------------------------


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


# --- 8. a link planted as the file store's lock -------------------------------------------


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


# --- operators: cache headers, the key, the grace period, conditional writes --------------


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
