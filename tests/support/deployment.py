"""A merged packages tree ready to publish: real signed packages for two arches, their
archive from merge and the public key that verifies them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import keys, merge


@dataclass(frozen=True)
class Built:
    """A merged packages tree with its archive and the key that signed it."""

    packages: Path
    archive: Path
    public_key: Path
    files: int


def build_deployment(base: Path, count: int = 3, size: int = 2000) -> Built:
    key = SigningKey(keys.generate(2048), "acme-app.rsa.pub")
    for arch in ("x86_64", "aarch64"):
        built = [
            make_package(key, f"app{i}", "1.0.0-r0", arch, files={f"srv/app{i}": os.urandom(size)})
            for i in range(count)
        ]
        write_repo(base / "packages" / "acme", key, built, arch)
    archive = base / "packages.zip"
    merge.write_zip(merge.collect([base / "packages"]), archive)
    return Built(base / "packages", archive, key.write_public(base / "keys"), count * 2 + 2)
