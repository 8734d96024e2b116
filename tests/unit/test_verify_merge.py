from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import pytest

from devkit.apkfactory import (
    Package,
    SigningKey,
    make_index,
    make_package,
    write_repo,
)
from pakman import apk, keys, merge
from pakman.errors import ConfigError, PackageFormatError
from pakman.trust import Trust
from pakman.verify import verify_root

_KEYS: dict[str, keys.KeyPair] = {}


def signing_key(name: str = "acme-app.rsa.pub", which: str = "main") -> SigningKey:
    if which not in _KEYS:
        _KEYS[which] = keys.generate(2048)
    return SigningKey(_KEYS[which], name)


@pytest.fixture
def key() -> SigningKey:
    return signing_key()


def packages(key: SigningKey, arch: str = "x86_64") -> list[Package]:
    return [
        make_package(key, "app", "1.2.3-r0", arch, depends=("app-data",)),
        make_package(key, "app-data", "1.2.3-r0", arch, algorithm="sha256"),
    ]


def repo(tmp_path: Path, key: SigningKey, arch: str = "x86_64", org: str = "acme") -> Path:
    write_repo(tmp_path / "packages" / org, key, packages(key, arch), arch)
    return tmp_path / "packages"


def problems(root: Path, key: SigningKey, tmp_path: Path) -> list[str]:
    trusted = Trust({key.name: key.pair.public_pem}).public
    return [str(p) for p in verify_root(root, trusted).problems]


# --- reading ---------------------------------------------------------------------------


def test_read_package_and_index(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    package = apk.read_package(root / "acme/x86_64/app-1.2.3-r0.apk")
    assert package.field("pkgname") == "app"
    assert package.info["depend"] == ("app-data",)
    assert package.signatures[0].algorithm == "sha1"
    assert package.signatures[0].key_name == "acme-app.rsa.pub"
    index = apk.read_index(root / "acme/x86_64/APKINDEX.tar.gz")
    assert [r["P"] for r in index.records] == ["app", "app-data"]
    assert index.records[0]["C"] == package.checksum
    assert index.description == "pakman test repository"


def test_v3_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "v3.apk"
    path.write_bytes(b"ADBd" + b"\0" * 64)
    with pytest.raises(PackageFormatError, match="apk v3 format is not supported yet"):
        apk.read_package(path)


# --- verification: the good case against real apk --------------------------------------


def test_valid_tree_verifies(tmp_path: Path, key: SigningKey) -> None:
    assert problems(repo(tmp_path, key), key, tmp_path) == []


# --- verification: each failure names itself --------------------------------------------


def test_tampered_control_stream(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    target = root / "acme/x86_64/app-1.2.3-r0.apk"
    package = apk.read_package(target)
    start = target.read_bytes().index(package.control)
    # Replace the control stream with one that differs but is still valid gzip.
    forged = gzip.compress(gzip.decompress(package.control) + b"\0" * 512, mtime=0)
    data = target.read_bytes()
    target.write_bytes(data[:start] + forged + data[start + len(package.control) :])
    assert problems(root, key, tmp_path) == [
        "acme/x86_64/app-1.2.3-r0.apk: bad signature: does not verify with acme-app.rsa.pub"
    ]


def test_index_signed_by_another_key(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    other = signing_key("intruder.rsa.pub", "other")
    index = root / "acme/x86_64/APKINDEX.tar.gz"
    index.write_bytes(make_index(other, packages(key)))
    (found,) = problems(root, key, tmp_path)
    assert found.startswith(
        "acme/x86_64/APKINDEX.tar.gz: UNTRUSTED signature: signed with key intruder.rsa.pub"
    )


def test_a_key_file_under_another_name_verifies_by_content(tmp_path: Path, key: SigningKey) -> None:
    """The same key under another file name verifies; the report says under which name
    hosts must install it. Another key under any name does not."""
    misnamed = SigningKey(key.pair, "acme-app-2024.rsa.pub")  # same key, other file name
    root = tmp_path / "packages"
    write_repo(root / "acme", misnamed, packages(misnamed))
    report = verify_root(root, Trust({key.name: key.pair.public_pem}).public)
    assert report.ok, report.problems
    assert report.signed_as == {"acme-app-2024.rsa.pub": "acme-app.rsa.pub"}
    assert report.notes == [
        "warning: key acme-app.rsa.pub verifies packages signed as acme-app-2024.rsa.pub:"
        " hosts must install it as /etc/apk/keys/acme-app-2024.rsa.pub"
    ]
    other = signing_key("intruder.rsa.pub", "other")
    found = problems(root, other, tmp_path)
    assert len(found) == 3
    assert all("UNTRUSTED signature" in line for line in found)
    assert found[0].endswith(
        "signed with key acme-app-2024.rsa.pub, and no trusted key (intruder.rsa.pub) verifies it"
    )


def test_index_entry_mismatch(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    rebuilt = make_package(key, "app", "1.2.3-r0", files={"usr/share/app/other": b"x"})
    (root / "acme/x86_64/app-1.2.3-r0.apk").write_bytes(rebuilt.data)
    assert problems(root, key, tmp_path) == [
        "acme/x86_64/APKINDEX.tar.gz: app-1.2.3-r0.apk: integrity error: does not match its"
        " index entry (C:)"
    ]


def test_package_missing_from_index(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    extra = make_package(key, "stray", "0.1.0-r0")
    (root / "acme/x86_64" / extra.filename).write_bytes(extra.data)
    assert problems(root, key, tmp_path) == [
        "acme/x86_64/APKINDEX.tar.gz: stray-0.1.0-r0.apk is not in the index"
    ]


def test_index_entry_without_package(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    (root / "acme/x86_64/app-data-1.2.3-r0.apk").unlink()
    assert problems(root, key, tmp_path) == [
        "acme/x86_64/APKINDEX.tar.gz: lists app-data-1.2.3-r0.apk, which is missing"
    ]


def test_truncated_file(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    target = root / "acme/x86_64/app-1.2.3-r0.apk"
    package = apk.read_package(target)
    data = target.read_bytes()
    cut = data.index(package.control) + len(package.control) // 2
    target.write_bytes(data[:cut])
    (found,) = problems(root, key, tmp_path)
    assert found.startswith("acme/x86_64/app-1.2.3-r0.apk: truncated")


def test_not_gzip(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    (root / "acme/x86_64/app-1.2.3-r0.apk").write_text("<html>404</html>")
    (found,) = problems(root, key, tmp_path)
    assert found == "acme/x86_64/app-1.2.3-r0.apk: not a v2 apk file (no gzip stream)"


# --- the verify CLI ----------------------------------------------------------------------


# --- merge -------------------------------------------------------------------------------


def artifacts(tmp_path: Path, key: SigningKey) -> Path:
    """GitHub's layout: one artifact per runner arch."""
    base = tmp_path / "artifacts"
    write_repo(base / "packages-X64" / "acme", key, packages(key, "x86_64"), "x86_64")
    write_repo(base / "packages-ARM64" / "acme", key, packages(key, "aarch64"), "aarch64")
    return base


def test_merge_github_artifacts(tmp_path: Path, key: SigningKey) -> None:
    merged = merge.collect([artifacts(tmp_path, key)])
    assert merged.architectures == ["aarch64", "x86_64"]
    assert sorted(merged.entries) == [
        "acme/aarch64/APKINDEX.tar.gz",
        "acme/aarch64/app-1.2.3-r0.apk",
        "acme/aarch64/app-data-1.2.3-r0.apk",
        "acme/x86_64/APKINDEX.tar.gz",
        "acme/x86_64/app-1.2.3-r0.apk",
        "acme/x86_64/app-data-1.2.3-r0.apk",
    ]


def test_merge_abuild_layouts_and_identical_duplicates(tmp_path: Path, key: SigningKey) -> None:
    first = repo(tmp_path / "one", key)
    second = tmp_path / "two"
    shutil.copytree(first, second)  # the same bytes twice is fine
    write_repo(tmp_path / "three" / "acme", key, packages(key, "aarch64"), "aarch64")
    merged = merge.collect([first, second, tmp_path / "three"])
    assert len(merged.entries) == 6


def test_merge_conflict_names_both_sources(tmp_path: Path, key: SigningKey) -> None:
    first = repo(tmp_path / "one", key)
    second = tmp_path / "two" / "acme" / "x86_64"
    second.mkdir(parents=True)
    (second / "app-1.2.3-r0.apk").write_bytes(
        make_package(key, "app", "1.2.3-r0", files={"a": b"b"}).data
    )
    with pytest.raises(ConfigError) as caught:
        merge.collect([first, tmp_path / "two"])
    (line,) = caught.value.problems
    assert line.startswith("acme/x86_64/app-1.2.3-r0.apk: conflict: ")
    assert str(first / "acme/x86_64/app-1.2.3-r0.apk") in line
    assert str(second / "app-1.2.3-r0.apk") in line


def test_merge_rejects_files_outside_the_layout(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    (root / "stray.apk").write_text("x")
    (root / "acme" / "notes.md").write_text("x")
    with pytest.raises(ConfigError) as caught:
        merge.collect([root])
    assert sorted(caught.value.problems) == [
        f"{root}/acme/notes.md: not an .apk or APKINDEX.tar.gz",
        f"{root}/stray.apk: not at <repo>/<arch>/<file> or <artifact>/<repo>/<arch>/<file>"
        " with a known <arch>",
    ]


def test_zip_is_deterministic_and_follows_the_consumer_rule(
    tmp_path: Path, key: SigningKey
) -> None:
    source = artifacts(tmp_path, key)
    merged = merge.collect([source])
    one, two = tmp_path / "one.zip", tmp_path / "two.zip"
    digest = merge.write_zip(merged, one)
    for path in source.rglob("*"):  # new mtimes must not change the archive
        path.touch()
    assert merge.write_zip(merge.collect([source]), two) == digest
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(merged.entries)
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert all(i.external_attr >> 16 == 0o100644 for i in infos)
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)  # already compressed
    for name in merge.consumer_view(one):
        arch, filename = name.split("/")
        assert arch in ("x86_64", "aarch64")
        assert filename.endswith((".apk", "APKINDEX.tar.gz"))


def test_the_fast_tar_reader_agrees_with_tarfile(tmp_path: Path) -> None:
    """Control, signature and index streams: the header walk reads what tarfile reads."""
    import tarfile

    from pakman.apk import _tarfile_members, _ustar_members

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((".PKGINFO", b"pkgname = x\n"), ("d" * 60 + "/" + "n" * 90, b"long")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    raw = buffer.getvalue()
    path = tmp_path / "x.apk"
    assert _ustar_members(raw) == _tarfile_members(raw, path, "control")
    assert _ustar_members(raw)["d" * 60 + "/" + "n" * 90] == b"long"
    with pytest.raises(ValueError, match="truncated"):
        _ustar_members(raw[:517])
    with pytest.raises(ValueError, match="checksum"):  # not a tar header at all
        _ustar_members(b"x" * 1024)


def test_the_forked_check_splits_the_bytes_not_the_count(tmp_path: Path) -> None:
    """One big package and many small ones: the big one gets a process to itself (split
    by count, it shared one with half the small ones while the other process idled)."""
    from pakman.verify import _halves

    big = tmp_path / "big.apk"
    big.write_bytes(b"x" * 4_000_000)
    small = []
    for i in range(99):
        path = tmp_path / f"s{i:02d}.apk"
        path.write_bytes(b"x" * 20_000)
        small.append(path)
    paths = sorted([big, *small])
    mine, theirs = _halves(paths)
    assert sorted([*mine, *theirs]) == paths
    alone = mine if big in mine else theirs
    assert alone == [big]


# --- a package of another arch in an arch folder (issue 24.3) -----------------------------


def test_verify_refuses_an_untrusted_index_before_parsing_its_records(
    tmp_path: Path, key: SigningKey
) -> None:
    """A small index not signed by the key, holding 150,000 records: refused at the
    signature, its records never parsed (issue 27, 7)."""
    import tracemalloc

    from tests.support.apkrepo import _index_with_text, _many_records

    root = repo(tmp_path, key)
    stranger = signing_key("stranger.rsa.pub", "stranger")
    (root / "acme" / "x86_64" / "APKINDEX.tar.gz").write_bytes(
        _index_with_text(stranger, _many_records(150_000))
    )
    tracemalloc.start()
    try:
        found = problems(root, key, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any("UNTRUSTED signature" in problem for problem in found), found
    assert peak < 20 * 1024 * 1024, peak  # parsed, the records would take well over 50 MB


# --- hostile input: each one clean error, nothing lost or leaked --------------------------
