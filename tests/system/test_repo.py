"""``pakman repo``: a signed apk repository in a bucket or folder, used by real apk.

Real apk-tools 3 in the Alpine 3.23 root installs, upgrades and rolls back over HTTP from
a folder the repository was written to; the S3 cases run against the real S3 server of
the tests, whose conditional writes decide races.
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import apk, keys
from pakman.apkversion import compare
from pakman.repo import index
from pakman.storage.filestore import FileStore
from pakman.storage.objects import LocalObject
from tests.support import rig
from tests.support.apkrepo import (
    FOLDER,
    _apk,
    _keys,
    build,
    listed,
    repo,
)
from tests.unit.test_repo import CrashAt, _add, _run


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
