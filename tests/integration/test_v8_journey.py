"""A v8 user's workflow, command for command, with PAKman 9: as the unprivileged runner
user of setup-alpine's chroot (real Alpine 3.23, busybox, sudo, apk), against the fake
Instellar API and the real S3 server. Also what the v8 journey needs on its own: v8's
archive layout, and a public key file under any name."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.s3 import S3Server
from pakman import keys
from tests.support import rig
from tests.support.cli import run_pakman
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA, Instellar
from tests.support.paths import V8_CONFIGS

REPOSITORY = "upmaru/locomo"


KEY_NAME = "upmaru-locomo.rsa.pub"  # what abuild signs as, after bootstrap


PAIR = keys.generate(2048)


def _packages(top: Path, name: str = KEY_NAME) -> None:
    """What abuild -r leaves in ~/packages: signed packages and index (abuild is not here)."""
    key = SigningKey(PAIR, name)
    built = [
        make_package(key, "locomo", "0.0.0-r7"),
        make_package(key, "locomo-openrc", "0.0.0-r7"),
    ]
    write_repo(top / "upmaru", key, built)


def _v8_home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """~/packages as abuild leaves it, and ~/packages.zip as v8's merge step zips it."""
    home = tmp_path / "home"
    _packages(home / "packages")
    zip_tool = rig.need_tool("zip")
    zipped = [zip_tool, "-r", str(home / "packages.zip"), str(home / "packages")]
    subprocess.run(zipped, check=True, capture_output=True, cwd=tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(V8_CONFIGS / "rails.yml", workspace / "instellar.yml")
    return home, {
        "HOME": str(home),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": REPOSITORY,
        "WORKFLOW_SHA": SHA,
        "WORKFLOW_REF": "refs/heads/main",
        "INSTELLAR_AUTH_TOKEN": AUTH,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
    }


def _key_file(tmp_path: Path, name: str = "key.rsa.pub") -> Path:
    path = tmp_path / "keys" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(PAIR.public_pem)
    return path


NOTE = (
    "warning: key key.rsa.pub verifies packages signed as upmaru-locomo.rsa.pub:"
    " hosts must install it as /etc/apk/keys/upmaru-locomo.rsa.pub"
)


def test_push_takes_v8s_own_zip_and_still_checks_every_entry(
    api: Instellar, tmp_path: Path, s3_server: S3Server
) -> None:
    home, env = _v8_home(tmp_path)
    archive = home / "packages.zip"
    with zipfile.ZipFile(archive) as zipped:
        entries = [(i.filename, zipped.read(i)) for i in zipped.infolist()]
    prefix = str(home / "packages").lstrip("/")
    assert {name for name, _ in entries} >= {f"{prefix}/upmaru/x86_64/APKINDEX.tar.gz"}
    key = _key_file(tmp_path)
    env["INSTELLAR_ENDPOINT"] = api.endpoint
    pushed = run_pakman("push", "--key", str(key), env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert NOTE in pushed.stderr.splitlines()
    stored = {
        o["Key"]
        for o in s3_server.client().list_objects_v2(Bucket=api.storage["bucket"])["Contents"]
    }
    assert f"deployments/upmaru/locomo/{SHA}/x86_64/locomo-0.0.0-r7.apk" in stored

    # The same layout with other bytes in one entry is refused before anything is sent.
    forged = [(n, b"forged" if n.endswith("locomo-0.0.0-r7.apk") else d) for n, d in entries]
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in forged:
            zipped.writestr(name, data)
    refused = run_pakman("push", "--key", str(key), "--sha", "ab" * 20, env=env)
    assert refused.returncode == 2
    assert f"{prefix}/upmaru/x86_64/locomo-0.0.0-r7.apk differs from" in refused.stderr
    assert api.paths().count("POST /publish/deployments") == 1  # the first push's only
    listed = s3_server.client().list_objects_v2(Bucket=api.storage["bucket"])["Contents"]
    assert not [o["Key"] for o in listed if "ab" * 20 in o["Key"]]


def test_a_key_file_under_any_name_verifies_merges_publishes_and_serves(tmp_path: Path) -> None:
    """The key under another name verifies everywhere, and each command says, in one line,
    under which name hosts must install it; repo signs its index under that name."""
    from pakman import apk

    tree = tmp_path / "packages"
    _packages(tree)
    key = _key_file(tmp_path)
    private = tmp_path / "keys" / "key.rsa"
    private.write_bytes(PAIR.private_pem)
    store = f"file://{tmp_path / 'store'}"
    runs = {
        "verify": run_pakman("verify", str(tree), "--key", str(key)),
        "merge": run_pakman(
            "merge", str(tree), "--output", str(tmp_path / "p.zip"), "--key", str(key)
        ),
        "publish": run_pakman(
            "publish", str(tree), "--store", store, "--create-bucket", "--repository",
            REPOSITORY, "--sha", SHA, "--key", str(key),
        ),
        "repo": run_pakman(
            "repo", str(tree), "--key", str(key), "--private-key", str(private), "--store",
            store, "--create-bucket", "--branch", "v3.23",
        ),
    }  # fmt: skip
    for command, result in runs.items():
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr.splitlines().count(NOTE) == 1, (command, result.stderr)
    as_json = run_pakman("verify", str(tree), "--key", str(key), "--json")
    assert json.loads(as_json.stdout)["signed_as"] == {KEY_NAME: "key.rsa.pub"}
    index = tmp_path / "store" / "alpine/v3.23/upmaru/x86_64/APKINDEX.tar.gz"
    signed = apk.parse_index(index.read_bytes(), index).signatures
    assert [s.key_name for s in signed] == [KEY_NAME]

    # Another key, under the signing name or any other, still verifies nothing.
    intruder = tmp_path / "intruder" / "upmaru-locomo.rsa.pub"
    intruder.parent.mkdir()
    intruder.write_bytes(keys.generate(2048).public_pem)
    for name in ("upmaru-locomo.rsa.pub", "other.pub"):
        moved = intruder.rename(intruder.parent / name)
        refused = run_pakman("verify", str(tree), "--key", str(moved))
        assert refused.returncode == 1
        assert NOTE not in refused.stderr
        intruder = moved
