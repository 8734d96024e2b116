"""``pakman repo``: a signed apk repository in a bucket or folder, used by real apk.

Real apk-tools 3 in the Alpine 3.23 root installs, upgrades and rolls back over HTTP from
a folder the repository was written to; the S3 cases run against the real S3 server of
the tests, whose conditional writes decide races.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_index, make_package, write_repo
from devkit.s3 import S3Server
from pakman import apk, keys, pipeline
from pakman.apkversion import compare
from pakman.errors import ConfigError, VerificationError
from pakman.identity import Identity
from pakman.repo import index
from pakman.storage.filestore import FileStore
from pakman.storage.objects import LocalObject
from tests.support import rig
from tests.support.apkrepo import FOLDER, _apk, _keys, build, listed, repo
from tests.support.cli import run_pakman


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
