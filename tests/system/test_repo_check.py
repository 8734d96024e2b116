"""``pakman repo check URL`` against a repository in the real S3 server, read anonymously
over HTTP as hosts read it; real apk-tools 3 installs from the same URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey
from devkit.s3 import S3Server
from pakman import keys
from tests.integration.test_repo_check import _public_bucket, _publish
from tests.support import rig
from tests.support.apkrepo import _keys
from tests.support.cli import run_pakman


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(keys.generate(2048), "acme-app.rsa.pub")


def test_check_passes_a_repository_apk_installs_from(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str, alpine: rig.Overlay
) -> None:
    _publish(tmp_path, key, s3_server, bucket, "app", "tool")
    url = _public_bucket(s3_server, bucket)
    public, _ = _keys(tmp_path, key)
    checked = run_pakman("repo", "check", url, "--key", str(public), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["packages"] == 2
    # The key is served beside the repository: a host fetches it from there.
    alpine.run(
        f"mkdir -p /work/keys && wget -q -O /work/keys/{key.name}"
        f" {s3_server.endpoint}/{bucket}/alpine/keys/{key.name}"
    )
    installed = alpine.run(
        f"apk add -U --repositories-file /dev/null --repository {url} --keys-dir /work/keys"
        " app && cat /usr/share/app/version",
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.endswith("1.0.0-r0")
