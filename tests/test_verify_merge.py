from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from pakman import apk, keys, merge
from pakman.errors import ConfigError, PackageFormatError
from pakman.verify import trusted_keys, verify_root
from tests import rig
from tests.apkfactory import Built, SigningKey, make_index, make_package, write_repo
from tests.conftest import run_pakman

_KEYS: dict[str, keys.KeyPair] = {}


def signing_key(name: str = "acme-app.rsa.pub", which: str = "main") -> SigningKey:
    if which not in _KEYS:
        _KEYS[which] = keys.generate(2048)
    return SigningKey(_KEYS[which], name)


@pytest.fixture
def key() -> SigningKey:
    return signing_key()


def packages(key: SigningKey, arch: str = "x86_64") -> list[Built]:
    return [
        make_package(key, "app", "1.2.3-r0", arch, depends=("app-data",)),
        make_package(key, "app-data", "1.2.3-r0", arch, algorithm="sha256"),
    ]


def repo(tmp_path: Path, key: SigningKey, arch: str = "x86_64", org: str = "acme") -> Path:
    write_repo(tmp_path / "packages" / org, key, packages(key, arch), arch)
    return tmp_path / "packages"


def problems(root: Path, key: SigningKey, tmp_path: Path) -> list[str]:
    trusted = trusted_keys({key.name: key.pair.public_pem})
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


def test_real_apk_agrees_and_installs_with_only_our_key(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    root = repo(tmp_path, key)
    key.write_public(tmp_path / "keys")
    alpine.bind(tmp_path, "/work", readonly=True)
    out = alpine.run("apk --keys-dir /work/keys verify /work/packages/acme/x86_64/*").stdout
    assert out.count(": OK") == 3
    alpine.run(
        "apk add --repositories-file /dev/null --repository /work/packages/acme "
        "--keys-dir /work/keys app"
    )
    assert alpine.run("cat /usr/share/app-data/hello.txt").stdout == "hello from app-data\n"
    assert problems(root, key, tmp_path) == []


# --- verification: each failure names itself --------------------------------------------


def _rewrite(path: Path, tamper: int) -> None:
    data = bytearray(path.read_bytes())
    data[tamper] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_data_stream(tmp_path: Path, key: SigningKey, alpine: rig.Overlay) -> None:
    root = repo(tmp_path, key)
    target = root / "acme/x86_64/app-1.2.3-r0.apk"
    _rewrite(target, len(target.read_bytes()) - 12)  # inside the data stream's body
    assert problems(root, key, tmp_path) == [
        "acme/x86_64/app-1.2.3-r0.apk: integrity error: the data stream does not match datahash"
    ]
    key.write_public(tmp_path / "keys")
    alpine.bind(tmp_path, "/work", readonly=True)
    result = alpine.run(
        f"apk --keys-dir /work/keys verify /work/packages/{target.relative_to(root)}", check=False
    )
    assert result.returncode != 0  # real apk agrees


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
    report = verify_root(root, trusted_keys({key.name: key.pair.public_pem}))
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


def test_real_v3_package_is_refused(tmp_path: Path, key: SigningKey, alpine: rig.Overlay) -> None:
    """A real ADB package, written by apk-tools 3's own mkpkg."""
    out = tmp_path / "v3"
    out.mkdir()
    alpine.bind(out, "/out")
    alpine.run(
        "mkdir -p /tmp/files/usr/share/v3 && echo hi > /tmp/files/usr/share/v3/f && "
        "apk mkpkg --files /tmp/files --info name:v3pkg --info version:1.0-r0 "
        "--info arch:x86_64 --output /out/v3pkg-1.0-r0.apk"
    )
    v3 = out / "v3pkg-1.0-r0.apk"
    with pytest.raises(PackageFormatError, match="apk v3 format is not supported yet"):
        apk.read_package(v3)
    root = repo(tmp_path, key)
    shutil.copy(v3, root / "acme/x86_64")
    assert "acme/x86_64/v3pkg-1.0-r0.apk: apk v3 format is not supported yet" in problems(
        root, key, tmp_path
    )


# --- the verify CLI ----------------------------------------------------------------------


def test_verify_cli_exit_codes_and_json(tmp_path: Path, key: SigningKey) -> None:
    root = repo(tmp_path, key)
    public = key.write_public(tmp_path / "keys")
    good = run_pakman("verify", str(root), "--key", str(public))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "2 package(s), 1 index(es): ok" in good.stdout
    (root / "acme/x86_64/app-data-1.2.3-r0.apk").unlink()
    bad = run_pakman("verify", str(root), "--key", str(public), "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "path": "acme/x86_64/APKINDEX.tar.gz",
            "problem": "lists app-data-1.2.3-r0.apk, which is missing",
        }
    ]
    missing_key = run_pakman("verify", str(root), "--key", str(tmp_path / "nope.pub"))
    assert missing_key.returncode == 2
    assert "--key:" in missing_key.stderr
    assert "Traceback" not in missing_key.stderr
    no_dir = run_pakman("verify", str(tmp_path / "nowhere"), "--key", str(public))
    assert no_dir.returncode == 2


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


def test_agent_extraction_installs_with_real_apk(
    tmp_path: Path, key: SigningKey, alpine: rig.Overlay
) -> None:
    """Unzip as the agent does: keep the last two parts under <channel>/<org>/<package>/."""
    archive = tmp_path / "packages.zip"
    merge.write_zip(merge.collect([artifacts(tmp_path, key)]), archive)
    served = tmp_path / "served"
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = served / "develop" / "acme" / "app" / "/".join(info.filename.split("/")[-2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zipped.read(info))
    key.write_public(tmp_path / "keys")
    alpine.bind(tmp_path, "/work", readonly=True)
    alpine.run(
        "apk add --repositories-file /dev/null --repository /work/served/develop/acme/app "
        "--keys-dir /work/keys app"
    )
    assert alpine.run("apk info -e app app-data").stdout.split() == ["app", "app-data"]


def test_merge_cli_verifies_first(tmp_path: Path, key: SigningKey) -> None:
    source = artifacts(tmp_path, key)
    public = key.write_public(tmp_path / "keys")
    out = tmp_path / "packages.zip"
    result = run_pakman(
        "merge",
        str(source),
        "--output",
        str(out),
        "--key",
        str(public),
        "--packages-dir",
        str(tmp_path / "merged"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "merged/acme/aarch64/APKINDEX.tar.gz").exists()
    assert out.exists()
    (source / "packages-X64/acme/x86_64/app-1.2.3-r0.apk").write_text("corrupt")
    out.unlink()
    refused = run_pakman("merge", str(source), "--output", str(out), "--key", str(public))
    assert refused.returncode == 1
    assert "error: acme/x86_64/app-1.2.3-r0.apk: not a v2 apk file" in refused.stderr
    assert not out.exists()
    forced = run_pakman("merge", str(source), "--output", str(out), "--no-verify")
    assert forced.returncode == 0
    no_key = run_pakman("merge", str(source), "--output", str(out))
    assert no_key.returncode == 2
    assert "--key:" in no_key.stderr


def test_the_fast_tar_reader_agrees_with_tarfile(tmp_path: Path) -> None:
    """Control, signature and index streams: the header walk reads what tarfile reads."""
    import io
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


def test_the_forked_check_reports_what_the_threaded_check_reports(
    tmp_path: Path, key: SigningKey
) -> None:
    """Half the packages are checked in a child process: its findings must come back."""
    from pakman.verify import _check_forked, _check_packages, _halves, trusted_keys

    built = [make_package(key, f"p{i:02d}") for i in range(70)]
    folder = write_repo(tmp_path / "packages" / "acme", key, built)
    paths = sorted(folder.glob("*.apk"))
    mine, theirs = _halves(paths)
    broken = [*theirs[:3], mine[0]]  # in the child's half, and one in the parent's
    for odd in broken:
        data = bytearray(odd.read_bytes())
        data[-30] ^= 0xFF
        odd.write_bytes(bytes(data))
    trusted = trusted_keys({key.name: key.pair.public_pem})
    forked = _check_forked(paths, trusted, True)
    threaded = _check_packages(paths, trusted, 1, True)
    assert forked.keys() == threaded.keys()
    for path in paths:
        assert isinstance(forked[path], str) == isinstance(threaded[path], str), path
        if not isinstance(forked[path], str):  # the child's digests came back with its half
            assert forked[path] == threaded[path]
    bad = sorted(path.name for path, result in forked.items() if isinstance(result, str))
    assert bad == sorted(p.name for p in broken)


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


def test_verify_merge_and_publish_refuse_a_package_of_another_arch(
    tmp_path: Path, key: SigningKey
) -> None:
    wrong = make_package(key, "app", "1.2.3-r0", "x86_64")
    data = make_package(key, "app-data", "1.2.3-r0", "noarch")  # noarch fits every folder
    tree = tmp_path / "packages"
    write_repo(tree / "acme", key, [wrong, data], "aarch64")
    public = key.write_public(tmp_path / "keys")
    said = "acme/aarch64/app-1.2.3-r0.apk: its .PKGINFO arch is x86_64, not aarch64 (its folder)"
    verified = run_pakman("verify", str(tree), "--key", str(public))
    assert verified.returncode == 1, verified.stderr
    assert said in verified.stdout + verified.stderr
    assert "app-data" not in verified.stdout + verified.stderr
    out = tmp_path / "packages.zip"
    merged = run_pakman("merge", str(tree), "--output", str(out), "--key", str(public))
    assert merged.returncode == 1, merged.stderr
    assert said in merged.stderr
    assert not out.exists()
    published = run_pakman(
        "publish", str(tree), "--repository", "acme/app", "--sha", "a" * 40,
        "--store", f"file://{tmp_path}/store", "--create-bucket", "--key", str(public),
    )  # fmt: skip
    assert published.returncode == 1, published.stderr
    assert said in published.stderr
    assert not (tmp_path / "store").exists()


def test_verify_refuses_an_untrusted_index_before_parsing_its_records(
    tmp_path: Path, key: SigningKey
) -> None:
    """A small index not signed by the key, holding 150,000 records: refused at the
    signature, its records never parsed (issue 27, 7)."""
    import tracemalloc

    from tests.test_repo_round2 import _index_with_text, _many_records

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


def test_verify_refuses_a_signed_index_with_too_many_records(
    tmp_path: Path, key: SigningKey
) -> None:
    from tests.test_repo_round2 import _index_with_text, _many_records

    root = repo(tmp_path, key)
    (root / "acme" / "x86_64" / "APKINDEX.tar.gz").write_bytes(
        _index_with_text(key, _many_records(apk.MAX_RECORDS + 1))
    )
    public = key.write_public(tmp_path / "keys")
    refused = run_pakman("verify", str(root), "--key", str(public))
    assert refused.returncode == 1, refused.stderr
    assert "APKINDEX.tar.gz: holds more than 200000 records" in refused.stdout + refused.stderr
