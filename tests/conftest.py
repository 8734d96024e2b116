"""Shared fixtures and pytest hooks; the helpers they use live in tests/support/ and devkit/."""

from __future__ import annotations

import functools
import http.server
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

# The Dagger SDK reads this at import time; set it before anything imports dagger.
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Pakman")
# A cache folder of the tests' own, for this process and the CLI runs: pakman must write
# nothing there (tests/integration/test_trust.py), and nothing of the user's may count.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="pakman-test-cache-")

from devkit import s3
from devkit.tools import Missing
from tests.support import rig
from tests.support.deployment import Built, build_deployment
from tests.support.http import serving
from tests.support.instellar import AUTH, PACKAGE_TOKEN, Instellar

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    """A real tool missing inside devkit (in a fixture) skips, or fails under CI=true."""
    try:
        return (yield)
    except Missing as missing:
        rig.need(False, str(missing))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    """A real tool missing inside devkit (in a test) skips, or fails under CI=true."""
    try:
        return (yield)
    except Missing as missing:
        rig.need(False, str(missing))


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
def s3_server() -> Iterator[s3.S3Server]:
    """A real S3 server (versitygw) on 127.0.0.1 for the session: fresh data, own keys."""
    with s3.versitygw_server() as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[s3.S3Server]:
    """moto's S3 mock, only where the server's behaviour does not matter."""
    with s3.moto_server() as server:
        yield server


_BUCKETS = itertools.count()


@pytest.fixture
def bucket(s3_server: s3.S3Server) -> str:
    """A fresh, empty bucket for one test."""
    name = f"releases-{next(_BUCKETS)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def api(s3_server: s3.S3Server, bucket: str) -> Iterator[Instellar]:
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
    server = Instellar(AUTH, PACKAGE_TOKEN, storage).start()
    yield server
    server.stop()


@pytest.fixture
def deployment_files(tmp_path: Path) -> Built:
    return build_deployment(tmp_path)


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static HTTP server over a folder, as a bucket with public read serves one."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):  # type: ignore[name-defined,misc]
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    with serving(server):
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
