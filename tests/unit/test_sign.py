"""``pakman sign``: the real key signs a tree built with a throwaway one, in PAKman's code.

What a host sees is checked with real apk-tools 3 in the Alpine 3.23 root: ``apk verify``
and ``apk add`` trusting only the real key.
"""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import apk, keys, sign
from pakman.errors import KeyMaterialError
from pakman.repo import index
from pakman.sign import load_key
from pakman.trust import Trust
from pakman.verify import verify_root

NAME = "acme-app.rsa.pub"


FOLDER = "acme/x86_64"


_PAIRS: dict[str, keys.KeyPair] = {}


def pair(which: str) -> keys.KeyPair:
    if which not in _PAIRS:
        _PAIRS[which] = keys.generate(2048)
    return _PAIRS[which]


def throwaway() -> SigningKey:
    """abuild's key of one build, made in the build container."""
    return SigningKey(pair("throwaway"), "builder-65f1e2a0.rsa.pub")


def build(top: Path, key: SigningKey | None = None) -> Path:
    """``<top>/acme/x86_64/`` as abuild leaves it: two packages and their index."""
    key = key or throwaway()
    packages = [
        make_package(key, "app", "1.2.3-r0", depends=("app-data",)),
        make_package(key, "app-data", "1.2.3-r0"),
    ]
    write_repo(top / "acme", key, packages)
    return top


def contents(top: Path) -> dict[str, bytes]:
    return {
        p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()
    }


def first_stream(data: bytes) -> int:
    """Length of the first gzip stream of a file (the signature stream)."""
    inflater = zlib.decompressobj(wbits=31)
    inflater.decompress(data)
    return len(data) - len(inflater.unused_data)


def problems(top: Path, name: str = NAME) -> list[str]:
    trusted = Trust({name: pair("real").public_pem}).public
    return [str(p) for p in verify_root(top, trusted).problems]


def test_only_the_signature_stream_changes(tmp_path: Path) -> None:
    top = build(tmp_path / "packages")
    private = top / FOLDER / "app-data-1.2.3-r0.apk"
    private.chmod(0o600)
    owner = (1000, 1000) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(private, *owner)  # as the build user left it
    before = contents(top)
    report = sign.sign_tree(top, pair("real").private_pem, NAME)
    assert report.replaced == (throwaway().name,)
    status = private.stat()
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o600, *owner)
    after = contents(top)
    assert sorted(report.changed) == sorted(k for k in after if after[k] != before[k])
    assert len(report.changed) == 3
    for name in report.changed:
        old, new = before[name], after[name]
        # Control and data streams (a package) or the index stream: byte for byte.
        assert old[first_stream(old) :] == new[first_stream(new) :]
        assert old[: first_stream(old)] != new[: first_stream(new)]
    listed = apk.read_index(top / FOLDER / "APKINDEX.tar.gz").records
    for record in listed:
        package = apk.read_package(top / FOLDER / apk.package_filename(record))
        assert record["C"] == package.checksum  # the index's C: still holds
    assert problems(top) == []


def test_signing_twice_or_elsewhere_gives_identical_bytes(tmp_path: Path) -> None:
    first = build(tmp_path / "one")
    second = tmp_path / "two"
    shutil.copytree(first, second)
    sign.sign_tree(first, pair("real").private_pem, NAME)
    signed = contents(first)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*.*")}
    again = sign.sign_tree(first, pair("real").private_pem, NAME)
    assert again.changed == ()
    assert len(again.files) == 3
    assert contents(first) == signed
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.*")} == mtimes  # not rewritten
    sign.sign_tree(second, pair("real").private_pem, NAME)
    assert contents(second) == signed


def test_the_repo_index_is_signed_by_the_one_signer(tmp_path: Path) -> None:
    records = [index.record(apk.read_package(p), "x86_64")
               for p in sorted((build(tmp_path) / FOLDER).glob("*.apk"))]  # fmt: skip
    built = index.build(records, "acme (pakman)", NAME, load_key(pair("real").private_pem))
    signed = built[first_stream(built) :]
    key = sign.load_key(pair("real").private_pem)
    assert built == sign.signature_stream(signed, key, NAME) + signed


def test_a_bad_key_is_one_clear_error_from_the_library(tmp_path: Path) -> None:
    top = build(tmp_path / "packages")
    with pytest.raises(KeyMaterialError, match=r"^\$K: is empty$"):
        sign.sign_tree(top, b"\n", NAME, what="$K")
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyMaterialError, match=r"^private key: not an RSA key$"):
        sign.sign_tree(top, other, NAME)
