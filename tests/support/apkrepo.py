"""apk repositories for the repo, verify and sign tests: packages trees as abuild leaves
them, `pakman repo` into a folder, what an index lists, real apk pointed at a served one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import keys
from pakman.repo import index
from tests.support import rig
from tests.support.cli import run_pakman

FOLDER = "alpine/v3.23/acme/x86_64"


def _keys(tmp_path: Path, key: SigningKey) -> tuple[Path, Path]:
    public = key.write_public(tmp_path / "keys")
    private = tmp_path / "private" / "acme-app.rsa"
    private.parent.mkdir(exist_ok=True)
    private.write_bytes(key.pair.private_pem)
    return public, private


def build(top: Path, key: SigningKey, version: str, *names: str) -> Path:
    """A packages tree as abuild leaves it: ``<top>/acme/x86_64/`` with its index."""
    packages = [
        make_package(
            key, name, version, "x86_64", files={f"usr/share/{name}/version": version.encode()}
        )
        for name in names or ("app",)
    ]
    write_repo(top / "acme", key, packages, "x86_64")
    return top


def repo(tmp_path: Path, key: SigningKey, tree: Path, store: Path, *extra: str) -> Any:
    public, private = _keys(tmp_path, key)
    return run_pakman(
        "repo", str(tree), "--key", str(public), "--private-key", str(private),
        "--store", f"file://{store}", "--create-bucket", "--branch", "v3.23", *extra,
    )  # fmt: skip


def listed(store: Path, key: SigningKey) -> list[str]:
    data = (store / FOLDER / "APKINDEX.tar.gz").read_bytes()
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    return sorted(index.filename(r) for r in index.read(data, "index", trusted))


def _apk(alpine: rig.Overlay, url: str, args: str, keys_dir: str = "/work/keys") -> Any:
    return alpine.run(
        f"apk -U --repositories-file /dev/null --repository {url}/alpine/v3.23/acme"
        f" --keys-dir {keys_dir} {args}",
        check=False,
    )


def _many_records(count: int) -> bytes:
    return b"".join(b"P:a%d\nV:1-r0\n\n" % n for n in range(count))


def _index_with_text(signer: SigningKey, text: bytes) -> bytes:
    import io
    import tarfile

    from devkit.apkfactory import _gzip, signature_stream

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("DESCRIPTION", b"x"), ("APKINDEX", text)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    signed = _gzip(buffer.getvalue())
    return signature_stream(signer, signed, "sha1") + signed
