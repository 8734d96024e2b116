"""A merged packages tree ready to publish: real signed packages for two arches, their
archive from merge and the public key that verifies them."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import keys, merge
from tests.support.cli import run_pakman
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA
from tests.support.paths import V8_CONFIGS


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


def publish_args(built: Built, *extra: str) -> list[str]:
    return [
        "publish",
        str(built.packages),
        "--repository",
        "acme/app",
        "--sha",
        SHA,
        "--key",
        str(built.public_key),
        *extra,
    ]


def push(
    built: Built, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`pakman push` of a built tree, verified with its key, as a v8 deploy job runs it."""
    return run_pakman(
        "push",
        "--packages-dir",
        str(built.packages),
        "--key",
        str(built.public_key),
        env=env,
        timeout=timeout,
    )


def _push_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    shutil.copy(V8_CONFIGS / "rails.yml", workspace / "instellar.yml")
    return {
        "HOME": str(tmp_path / "home"),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_SHA": SHA,
        "INSTELLAR_ENDPOINT": endpoint,
        "INSTELLAR_AUTH_TOKEN": AUTH,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
    }
