from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.apkfactory import (
    SigningKey,
    make_package,
    signature_stream,
    write_repo,
)
from devkit.peak_rss import PEAK_RSS
from pakman import apk
from pakman.trust import Trust
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built, publish_args
from tests.support.hostile import KEY, SECRET
from tests.unit.test_verify_merge import artifacts, repo, signing_key


@pytest.fixture
def key() -> SigningKey:
    return signing_key()


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


def test_verify_refuses_a_signed_index_with_too_many_records(
    tmp_path: Path, key: SigningKey
) -> None:
    from tests.support.apkrepo import _index_with_text, _many_records

    root = repo(tmp_path, key)
    (root / "acme" / "x86_64" / "APKINDEX.tar.gz").write_bytes(
        _index_with_text(key, _many_records(apk.MAX_RECORDS + 1))
    )
    public = key.write_public(tmp_path / "keys")
    refused = run_pakman("verify", str(root), "--key", str(public))
    assert refused.returncode == 1, refused.stderr
    assert "APKINDEX.tar.gz: holds more than 200000 records" in refused.stdout + refused.stderr


def _link_tree(root: Path, kind: str, outside: Path) -> Path:
    folder = root / "acme" / "x86_64"
    if kind == "symlinked arch dir":
        real = root.parent / "elsewhere"
        shutil.move(str(folder), real)
        folder.symlink_to(real)
        return folder
    if kind == "symlink to a file outside":
        (folder / "evil.apk").symlink_to(outside)
        return folder / "evil.apk"
    if kind == "symlink to /dev/zero":
        (folder / "zero.apk").symlink_to("/dev/zero")
        return folder / "zero.apk"
    if kind == "fifo":
        os.mkfifo(folder / "pipe.apk")
        return folder / "pipe.apk"
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder / ".DS_Store"


HOSTILE_TREES = [
    "symlinked arch dir",
    "symlink to a file outside",
    "symlink to /dev/zero",
    "fifo",
    ".DS_Store",
]


@pytest.mark.parametrize("kind", HOSTILE_TREES)
def test_verify_merge_and_publish_refuse_the_same_hostile_trees(
    kind: str, tmp_path: Path, deployment_files: Built
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET)
    bad = _link_tree(deployment_files.packages, kind, outside)
    key = str(deployment_files.public_key)
    runs = {
        "verify": run_pakman("verify", str(deployment_files.packages), "--key", key, timeout=60),
        "merge": run_pakman(
            "merge",
            str(deployment_files.packages),
            "--output",
            str(tmp_path / "out.zip"),
            "--key",
            key,
            timeout=60,
        ),
        "publish": run_pakman(
            *publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
            "--create-bucket",
            timeout=60,
        ),
    }
    for command, result in runs.items():
        one_line_error(result, 2, str(bad))
        assert SECRET not in result.stdout + result.stderr, command
    assert not (tmp_path / "out.zip").exists()
    assert not (tmp_path / "store").exists()


def test_two_repos_with_one_arch_file_merge_and_publish_alike(
    tmp_path: Path, deployment_files: Built
) -> None:
    """The agent keeps <arch>/<file>: two different files there are refused by both."""
    other = deployment_files.packages / "other" / "x86_64"
    other.mkdir(parents=True)
    (other / "app0-1.0.0-r0.apk").write_bytes(b"different bytes")
    merged = run_pakman(
        "merge",
        str(deployment_files.packages),
        "--output",
        str(tmp_path / "out.zip"),
        "--no-verify",
    )
    published = run_pakman(
        *publish_args(deployment_files, "--no-verify", "--store", f"file://{tmp_path / 's'}"),
        "--create-bucket",
    )
    for result in (merged, published):
        one_line_error(result, 2, "x86_64/app0-1.0.0-r0.apk")


def _bomb_package(key: SigningKey, directory: Path) -> Path:
    """A small .apk whose control stream inflates to 200 MiB."""
    inflated = io.BytesIO()
    with gzip.GzipFile(fileobj=inflated, mode="wb", compresslevel=9, mtime=0) as stream:
        chunk = b"\0" * (1 << 20)
        for _ in range(200):
            stream.write(chunk)
    control = inflated.getvalue()
    data = gzip.compress(b"payload", mtime=0)
    path = directory / "acme" / "x86_64" / "bomb-1.0-r0.apk"
    path.parent.mkdir(parents=True)
    path.write_bytes(signature_stream(key, control, "sha1") + control + data)
    return path


def test_a_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    key = SigningKey(KEY, "acme-app.rsa.pub")
    bomb = _bomb_package(key, tmp_path / "packages")
    assert bomb.stat().st_size < 1024 * 1024
    public = key.write_public(tmp_path / "keys")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_RSS,
            "verify",
            str(tmp_path / "packages"),
            "--key",
            str(public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "acme/x86_64/bomb-1.0-r0.apk" in result.stdout
    assert "decompression bomb" in result.stdout
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"  # the stream inflates to 200


@pytest.mark.parametrize("what", ["package", "index"])
def test_a_gzip_stream_that_is_not_tar_fails_verification(what: str, tmp_path: Path) -> None:
    key = SigningKey(KEY, "acme-app.rsa.pub")
    folder = tmp_path / "packages" / "acme" / "x86_64"
    write_repo(folder.parent, key, [make_package(key, "app")])
    not_tar = gzip.compress(b"plain text, not a tar archive " * 40, mtime=0)
    if what == "package":
        target = folder / "app-1.0.0-r0.apk"
        target.write_bytes(signature_stream(key, not_tar, "sha1") + not_tar + not_tar)
    else:
        target = folder / "APKINDEX.tar.gz"
        target.write_bytes(signature_stream(key, not_tar, "sha1") + not_tar)
    result = run_pakman(
        "verify", str(tmp_path / "packages"), "--key", str(key.write_public(tmp_path / "k"))
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"acme/x86_64/{target.name}" in result.stdout
    assert "is not a tar archive" in result.stdout


def test_verify_merge_and_publish_agree_on_an_unknown_arch(
    deployment_files: Built, tmp_path: Path
) -> None:
    """A copy of x86_64/ named mips/, index and all: verify said ok, the others exit 2."""
    acme = deployment_files.packages / "acme"
    shutil.copytree(acme / "x86_64", acme / "mips")
    key = str(deployment_files.public_key)
    results = [
        run_pakman("verify", str(deployment_files.packages), "--key", key),
        run_pakman("merge", str(deployment_files.packages), "--output", str(tmp_path / "m.zip")),
        run_pakman(
            *publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
        ),
    ]
    for result in results:
        one_line_error(result, 2, "acme/mips/APKINDEX.tar.gz: not at ", "with a known <arch>")
    assert not (tmp_path / "m.zip").exists()
    assert not (tmp_path / "store").exists()


def test_the_forked_check_reports_what_the_threaded_check_reports(
    tmp_path: Path, key: SigningKey
) -> None:
    """Half the packages are checked in a child process: its findings must come back."""
    from pakman.verify import _check_forked, _check_packages, _halves

    built = [make_package(key, f"p{i:02d}") for i in range(70)]
    folder = write_repo(tmp_path / "packages" / "acme", key, built)
    paths = sorted(folder.glob("*.apk"))
    mine, theirs = _halves(paths)
    broken = [*theirs[:3], mine[0]]  # in the child's half, and one in the parent's
    for odd in broken:
        data = bytearray(odd.read_bytes())
        data[-30] ^= 0xFF
        odd.write_bytes(bytes(data))
    trusted = Trust({key.name: key.pair.public_pem}).public
    forked = _check_forked(paths, trusted, True)
    threaded = _check_packages(paths, trusted, 1, True)
    assert forked.keys() == threaded.keys()
    for path in paths:
        assert isinstance(forked[path], str) == isinstance(threaded[path], str), path
        if not isinstance(forked[path], str):  # the child's digests came back with its half
            assert forked[path] == threaded[path]
    bad = sorted(path.name for path, result in forked.items() if isinstance(result, str))
    assert bad == sorted(p.name for p in broken)
