"""Shared fixtures: the v8 config corpus, a CLI runner and the real-tool rig."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The Dagger SDK reads this at import time; set it before anything imports dagger.
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Pakman")
# A cache folder of the tests' own, for this process and the CLI runs: pakman must write
# nothing there (tests/test_trust.py), and nothing of the user's may count.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pakman-test-cache-")

from tests import rig, servers

EXIT_GRACE = 60.0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave with pytest's own status even if the interpreter's exit then hangs (on a
    worker thread some test left blocked): a hung exit would look like a hung run."""

    def leave() -> None:
        time.sleep(EXIT_GRACE)
        sys.stderr.write(f"pytest: exit still blocked after {EXIT_GRACE:g} s: leaving\n")
        sys.stderr.flush()
        os._exit(int(exitstatus))

    threading.Thread(target=leave, daemon=True).start()


ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
V8_CONFIGS = FIXTURES / "v8"
# The repository each v8 fixture belongs to: its run.name is the package name.
V8_REPOSITORIES = {
    "astro": "artellectual/artellectual.com",
    "caddy": "upmaru/uplink-caddy",
    "elixir": "upmaru/rdio",
    "laravel": "upmaru/laraone",
    "next": "upmaru/nimbus",
    "rails": "upmaru/locomo",
}


def run_pakman(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ABUILD_"))}
    return subprocess.run(
        [sys.executable, "-m", "pakman.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
        timeout=timeout,
    )


def run_bootstrap(
    workspace: Path,
    home: Path,
    apk_keys_dir: Path | None = None,
    private_pem: str | None = None,
    repository: str = "upmaru/locomo",
) -> subprocess.CompletedProcess[str]:
    """`pakman bootstrap` of a workspace, its key (if any) from ABUILD_PRIVATE_KEY."""
    keys_dir = ["--apk-keys-dir", str(apk_keys_dir)] if apk_keys_dir else []
    return run_pakman(
        "bootstrap",
        "--workspace",
        str(workspace),
        "--repository",
        repository,
        "--home",
        str(home),
        *keys_dir,
        env={"ABUILD_PRIVATE_KEY": private_pem} if private_pem else None,
    )


@pytest.fixture(scope="session")
def alpine_root() -> Path:
    """The clean Alpine 3.23 root, built once and cached between runs."""
    return rig.build_root()


@pytest.fixture
def alpine(alpine_root: Path) -> Iterator[rig.Overlay]:
    """A fresh writable overlay over the Alpine root, for one test."""
    with rig.overlay(alpine_root) as root:
        yield root


@pytest.fixture(scope="session")
def s3_server() -> Iterator[servers.S3Server]:
    """A real S3 server (versitygw) on 127.0.0.1 for the session: fresh data, own keys."""
    with servers.versitygw_server() as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.S3Server]:
    """moto's S3 mock, only where the server's behaviour does not matter."""
    with servers.moto_server() as server:
        yield server


_BUCKETS = itertools.count()


@pytest.fixture
def bucket(s3_server: servers.S3Server) -> str:
    """A fresh, empty bucket for one test."""
    name = f"releases-{next(_BUCKETS)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@dataclass(frozen=True)
class Built:
    """A merged packages tree with its archive and the key that signed it."""

    packages: Path
    archive: Path
    public_key: Path
    files: int


def build_deployment(base: Path, count: int = 3, size: int = 2000) -> Built:
    from pakman import keys, merge
    from tests.apkfactory import SigningKey, make_package, write_repo

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


SHA = "fedcba9876543210fedcba9876543210fedcba98"
AUTH = "instellar-auth-token-SECRET-1"
PACKAGE_TOKEN = "instellar-package-token-SECRET-2"


@pytest.fixture
def api(s3_server: servers.S3Server, bucket: str) -> Iterator[servers.Instellar]:
    """The fake OpsMaru/Instellar API, handing out moto's bucket as its storage."""
    storage = {
        "host": "127.0.0.1",
        "port": s3_server.port,
        "scheme": "http",
        "region": "us-east-1",
        "bucket": bucket,
        "credential": {
            "access_key_id": s3_server.access_key_id,
            "secret_access_key": s3_server.secret_access_key,
        },
    }
    server = servers.Instellar(AUTH, PACKAGE_TOKEN, storage).start()
    yield server
    server.stop()


@pytest.fixture
def deployment_files(tmp_path: Path) -> Built:
    return build_deployment(tmp_path)


def git_workspace(path: Path, config: str | None = "rails", tag: str | None = None) -> Path:
    """A real git repository holding a v8 fixture as instellar.yml, with one commit."""
    path.mkdir(parents=True, exist_ok=True)
    if config:
        (path / "instellar.yml").write_text((V8_CONFIGS / f"{config}.yml").read_text())
    else:
        (path / "README").write_text("x")
    date = "2024-01-02T03:04:05+00:00"
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    identity = ["-c", "user.name=pakman", "-c", "user.email=tests@pakman.invalid"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-qm", "init"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    if tag:
        subprocess.run(["git", "-C", str(path), "tag", tag], check=True)
    return path
