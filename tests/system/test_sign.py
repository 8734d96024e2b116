"""``pakman sign``: the real key signs a tree built with a throwaway one, in PAKman's code.

What a host sees is checked with real apk-tools 3 in the Alpine 3.23 root: ``apk verify``
and ``apk add`` trusting only the real key.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from devkit.apkfactory import make_package, write_repo
from pakman import apk, sign
from tests.integration.test_sign import private_key_file, signature_entries
from tests.support import rig
from tests.support.cli import run_pakman
from tests.support.paths import ROOT
from tests.unit.test_sign import FOLDER, NAME, build, first_stream, pair, problems, throwaway


def public_keys(tmp_path: Path, name: str = NAME) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(pair("real").public_pem)
    return folder


@pytest.mark.parametrize(
    ("algorithm", "prefix"), [("sha1", ".SIGN.RSA."), ("sha256", ".SIGN.RSA256.")]
)
def test_signed_packages_and_index_pass_real_apk_trusting_only_the_key(
    tmp_path: Path, alpine: rig.Overlay, algorithm: str, prefix: str
) -> None:
    top = build(tmp_path / "packages")
    public_keys(tmp_path)
    alpine.bind(tmp_path, "/work")
    check = "apk --keys-dir /work/keys verify /work/packages/acme/x86_64/*"
    before = alpine.run(check, check=False)
    assert before.returncode != 0  # abuild's throwaway key is not trusted by hosts
    done = run_pakman(
        "sign", str(top), "--private-key", str(private_key_file(tmp_path)),
        "--key-name", NAME, "--algorithm", algorithm,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"signed 2 package(s) and 1 index(es) with {NAME} (RSA-{algorithm.upper()});"
        f" 3 rewritten, 0 unchanged; replaced signatures by {throwaway().name}\n"
    )
    for path in sorted((top / FOLDER).iterdir()):
        assert signature_entries(path) == [prefix + NAME]
    assert alpine.run(check).stdout.count(": OK") == 3
    alpine.run(
        "apk add --repositories-file /dev/null --repository /work/packages/acme "
        "--keys-dir /work/keys app"
    )
    assert alpine.run("cat /usr/share/app-data/hello.txt").stdout == "hello from app-data\n"
    assert problems(top) == []


def test_a_long_key_name_is_carried_as_abuild_does_and_real_apk_reads_it(
    tmp_path: Path, alpine: rig.Overlay
) -> None:
    name = "acme-" + "a" * 110 + ".rsa.pub"  # .SIGN.RSA256.<name> is 133 bytes: past ustar
    top = build(tmp_path / "packages")
    sign.sign_tree(top, pair("real").private_pem, name)
    sign.sign_tree(top, pair("real").private_pem, name, algorithm="sha1")  # and RSA
    data = (top / FOLDER / "APKINDEX.tar.gz").read_bytes()
    raw = gzip.decompress(data[: first_stream(data)])
    assert raw[156:157] == b"x"  # a pax header with its path record: tar --format=posix
    assert signature_entries(top / FOLDER / "app-1.2.3-r0.apk") == [".SIGN.RSA." + name]
    # Older abuild (GNU tar's default format) carried it as ././@LongLink: apk reads that too.
    older = top / FOLDER / "app-data-1.2.3-r0.apk"
    package = apk.read_package(older)
    info = tarfile.TarInfo(".SIGN.RSA." + name)
    info.size = len(package.signatures[0].value)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(package.signatures[0].value))
        end = tar.offset
    assert buffer.getvalue()[156:157] == b"L"
    rest = older.read_bytes()[first_stream(older.read_bytes()) :]
    older.write_bytes(gzip.compress(buffer.getvalue()[:end]) + rest)
    public_keys(tmp_path, name)
    alpine.bind(tmp_path, "/work")
    verified = alpine.run("apk --keys-dir /work/keys verify /work/packages/acme/x86_64/*")
    assert verified.stdout.count(": OK") == 3
    alpine.run(
        "apk add --repositories-file /dev/null --repository /work/packages/acme "
        "--keys-dir /work/keys app"
    )
    assert problems(top, name) == []


def test_repo_signs_its_index_under_a_long_key_name(tmp_path: Path, alpine: rig.Overlay) -> None:
    """Issue 27, 5: `repo` failed with "unexpected ValueError: name is too long"."""
    name = "acme-" + "b" * 90 + ".rsa.pub"
    top = tmp_path / "packages"
    write_repo(top / "acme", throwaway(), [make_package(throwaway(), "app", "1.0.0-r0")])
    sign.sign_tree(top, pair("real").private_pem, name)  # as a keyless build leaves it
    keys_dir = public_keys(tmp_path, name)
    store = tmp_path / "store"
    done = run_pakman(
        "repo", str(top), "--key", str(keys_dir / name),
        "--private-key", str(private_key_file(tmp_path)),
        "--store", f"file://{store}", "--create-bucket", "--branch", "v3.23",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    alpine.bind(tmp_path, "/work")
    alpine.run(
        "apk add --repositories-file /dev/null --repository /work/store/alpine/v3.23/acme "
        "--keys-dir /work/keys app"
    )
    assert alpine.run("cat /usr/share/app/hello.txt").stdout == "hello from app\n"


def test_a_failure_while_writing_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    """A disk that fills up half way (a real tmpfs, in a mount namespace of its own)."""
    rig.need_root()
    rig.need_tool("unshare")
    top = build(tmp_path / "packages")
    key = private_key_file(tmp_path)
    script = r"""
set -eu
disk=$1 top=$2 key=$3 python=$4
mount -t tmpfs -o size=256k tmpfs "$disk"
cp -a "$top" "$disk/packages"
(cd "$disk/packages" && find . -type f | sort | xargs sha256sum) > "$disk/../before"
dd if=/dev/zero of="$disk/filler" bs=4096 2>/dev/null || true
truncate -s -4096 "$disk/filler"
rc=0
PYTHONPATH="$5" "$python" -m pakman.cli sign "$disk/packages" --private-key "$key" \
  --key-name acme-app.rsa.pub || rc=$?
echo "rc=$rc"
(cd "$disk/packages" && find . -type f | sort | xargs sha256sum) > "$disk/../after"
find "$disk/packages" -name '.*' -type f
"""
    disk = tmp_path / "disk"
    disk.mkdir()
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(disk), str(top), str(key), sys.executable, str(ROOT)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert "rc=2" in result.stdout, result.stdout + result.stderr
    assert "cannot write: no space left on the device" in result.stderr
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()
    assert result.stdout.strip() == "rc=2"  # no temporary file left behind
