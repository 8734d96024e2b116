"""A v8 user's workflow, command for command, with PAKman 9: as the unprivileged runner
user of setup-alpine's chroot (real Alpine 3.23, busybox, sudo, apk), against the fake
Instellar API and the real S3 server. Also what the v8 journey needs on its own: v8's
archive layout, and a public key file under any name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.s3 import S3Server
from pakman import keys
from tests.support import rig, runner
from tests.support.cli import run_pakman
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA, Instellar
from tests.support.paths import V8_CONFIGS
from tests.support.workspace import git_workspace

REPOSITORY = "upmaru/locomo"
KEY_NAME = "upmaru-locomo.rsa.pub"  # what abuild signs as, after bootstrap
WORKSPACE = "/home/runner/work/locomo/locomo"
PAIR = keys.generate(2048)


def _own(path: Path, uid: int = runner.RUNNER_UID) -> Path:
    for folder, _, names in os.walk(path):
        for name in [".", *names]:
            os.chown(Path(folder) / name, uid, 100)
    return path


def _checkout(tmp_path: Path) -> Path:
    """The repository as actions/checkout leaves it, owned by the runner user."""
    return _own(git_workspace(tmp_path / "checkout", "rails"))


def _build_env() -> dict[str, str]:
    """The build job's bootstrap step: v8's variables and secrets."""
    return {
        "HOME": "/home/runner",
        "GITHUB_WORKSPACE": WORKSPACE,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_RUN_NUMBER": "7",
        "ABUILD_PRIVATE_KEY": PAIR.private_pem.decode(),
        "ABUILD_PUBLIC_KEY": PAIR.public_pem.decode(),
    }


def _packages(top: Path, name: str = KEY_NAME) -> None:
    """What abuild -r leaves in ~/packages: signed packages and index (abuild is not here)."""
    key = SigningKey(PAIR, name)
    built = [
        make_package(key, "locomo", "0.0.0-r7"),
        make_package(key, "locomo-openrc", "0.0.0-r7"),
    ]
    write_repo(top / "upmaru", key, built)


@pytest.fixture
def chroot(alpine: rig.Overlay) -> rig.Overlay:
    runner.prepare(alpine)
    return alpine


# --- bootstrap as the runner user --------------------------------------------------------


@pytest.mark.alpine
def test_bootstrap_as_the_runner_user_installs_the_key_through_sudo(
    chroot: rig.Overlay, tmp_path: Path
) -> None:
    chroot.bind(_checkout(tmp_path), WORKSPACE)
    done = runner.as_user(chroot, "runner", "pakman bootstrap", _build_env())
    assert "public key in /etc/apk/keys, through sudo" in done.stdout
    for line in PAIR.private_pem.decode().splitlines()[1:-1]:
        assert line not in done.stdout + done.stderr
    listed = runner.as_user(
        chroot,
        "runner",
        "stat -c '%U %a %n' /etc/apk/keys/upmaru-locomo.rsa.pub ~/.abuild/*"
        f" {WORKSPACE}/.apk/upmaru/locomo/APKBUILD",
    ).stdout.splitlines()
    assert listed == [
        "root 644 /etc/apk/keys/upmaru-locomo.rsa.pub",
        "runner 644 /home/runner/.abuild/abuild.conf",
        "runner 600 /home/runner/.abuild/upmaru-locomo.rsa",
        "runner 644 /home/runner/.abuild/upmaru-locomo.rsa.pub",
        f"runner 644 {WORKSPACE}/.apk/upmaru/locomo/APKBUILD",
    ]
    installed = chroot.upper / "etc/apk/keys/upmaru-locomo.rsa.pub"
    assert installed.read_bytes() == PAIR.public_pem
    # apk itself trusts what abuild will sign with that key.
    _packages(tmp_path / "built")
    chroot.bind(tmp_path / "built", "/built", readonly=True)
    verified = chroot.run("apk verify /built/upmaru/x86_64/locomo-0.0.0-r7.apk")
    assert "OK" in verified.stdout


@pytest.mark.alpine
def test_bootstrap_without_root_or_sudo_is_one_error_and_writes_nothing(
    chroot: rig.Overlay, tmp_path: Path
) -> None:
    checkout = _own(_checkout(tmp_path), runner.NOSUDO_UID)
    chroot.bind(checkout, WORKSPACE)
    env = {**_build_env(), "HOME": "/home/nosudo"}
    failed = runner.as_user(chroot, "nosudo", "pakman bootstrap", env, check=False)
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == [
        "error: /etc/apk/keys/upmaru-locomo.rsa.pub: cannot write: permission denied, and sudo"
        " cannot either (sudo: a password is required): run as root, allow this user"
        " passwordless sudo, or pass --apk-keys-dir"
    ]
    assert not (checkout / ".apk").exists()
    assert not (chroot.upper / "home/nosudo/.abuild").exists()
    assert not (chroot.upper / "etc/apk/keys/upmaru-locomo.rsa.pub").exists()


# --- v8's README workflow, command for command -------------------------------------------


@pytest.mark.alpine
def test_v8_readme_workflow_end_to_end_as_the_runner_user(
    alpine_root: Path, tmp_path: Path, api: Instellar, s3_server: S3Server
) -> None:
    checkout = _checkout(tmp_path)
    # The host folders the action mounts into the chroot, as v8's did.
    packages, artifacts = tmp_path / "packages", tmp_path / "artifacts"
    for folder in (packages, artifacts):
        folder.mkdir()
        _own(folder)

    # Build job.
    with rig.overlay(alpine_root) as build:
        runner.prepare(build)
        build.bind(checkout, WORKSPACE)
        build.bind(packages, "/home/runner/packages")
        runner.as_user(build, "runner", "pakman bootstrap", _build_env())
        # v8's build step cds there, then runs abuild snapshot and abuild -r.
        step = 'cd "$GITHUB_WORKSPACE"/.apk/"$GITHUB_REPOSITORY" && test -f APKBUILD'
        runner.as_user(build, "runner", step, _build_env())
        _packages(packages)  # abuild is not here: the factory signs as abuild would
        _own(packages)
    # actions/upload-artifact (name: X64, path: /home/runner/packages), then
    # actions/download-artifact (path: /home/runner/artifacts) in the deploy job.
    shutil.copytree(packages, artifacts / "X64", dirs_exist_ok=True)
    fresh = tmp_path / "deploy-packages"
    fresh.mkdir()
    _own(fresh)
    _own(artifacts)

    # Deploy job, in a fresh chroot.
    deploy_env = {
        "HOME": "/home/runner",
        "GITHUB_WORKSPACE": WORKSPACE,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_SHA": "0" * 40,
        "GITHUB_REF": "refs/heads/other",
        "WORKFLOW_REF": "refs/heads/main",
        "WORKFLOW_SHA": SHA,
        "INSTELLAR_ENDPOINT": api.endpoint,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
        "INSTELLAR_AUTH_TOKEN": AUTH,
    }
    with rig.overlay(alpine_root) as deploy:
        runner.prepare(deploy)
        deploy.bind(checkout, WORKSPACE)
        deploy.bind(fresh, "/home/runner/packages")
        deploy.bind(artifacts, "/home/runner/artifacts")
        runner.as_user(
            deploy,
            "runner",
            "cp -R /home/runner/artifacts/X64/. /home/runner/packages/\n"
            'sudo zip -r /home/runner/packages.zip "$HOME"/packages\n',
            deploy_env,
        )
        archive = deploy.upper / "home/runner/packages.zip"
        with zipfile.ZipFile(archive) as zipped:
            names = sorted(i.filename for i in zipped.infolist() if not i.is_dir())
        assert names == [
            "home/runner/packages/upmaru/x86_64/APKINDEX.tar.gz",
            "home/runner/packages/upmaru/x86_64/locomo-0.0.0-r7.apk",
            "home/runner/packages/upmaru/x86_64/locomo-openrc-0.0.0-r7.apk",
        ]
        pushed = runner.as_user(deploy, "runner", "pakman push", deploy_env, check=False)
        zipped_bytes = archive.read_bytes()
    for secret in (AUTH, PACKAGE_TOKEN, api.session_token):
        assert secret not in pushed.stdout + pushed.stderr
    assert pushed.returncode == 0, pushed.stderr
    archive_path = f"archives/{hashlib.sha256(zipped_bytes).hexdigest()}/packages.zip"
    assert api.paths()[:4] == [
        "POST /publish/automation/callback",
        f"GET /publish/deployments/{SHA}",
        "GET /publish/storage",
        "POST /publish/deployments",
    ]
    assert api.calls[3][2]["deployment"] == {
        "ref": "refs/heads/main",
        "hash": SHA,
        "archive_path": archive_path,
        "stack": "alpine/3.17",
    }
    bucket = api.storage["bucket"]
    stored = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    prefix = f"deployments/upmaru/locomo/{SHA}/"
    assert stored == {
        archive_path,
        prefix + "manifest.json",
        prefix + "x86_64/APKINDEX.tar.gz",
        prefix + "x86_64/locomo-0.0.0-r7.apk",
        prefix + "x86_64/locomo-openrc-0.0.0-r7.apk",
    }
    body = s3_server.client().get_object(Bucket=bucket, Key=archive_path)["Body"].read()
    assert body == zipped_bytes  # v8's own zip, as the agent will unpack it


# --- v8's archive, and a key file under any name ---------------------------------------


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
