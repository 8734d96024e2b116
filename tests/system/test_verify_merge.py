from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from devkit.apkfactory import (
    SigningKey,
)
from pakman import apk, merge
from pakman.errors import PackageFormatError
from tests.support import rig
from tests.unit.test_verify_merge import artifacts, problems, repo, signing_key


@pytest.fixture
def key() -> SigningKey:
    return signing_key()


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
