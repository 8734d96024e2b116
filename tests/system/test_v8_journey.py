"""A v8 user's workflow, command for command, with PAKman 9: as the unprivileged runner
user of setup-alpine's chroot (real Alpine 3.23, busybox, sudo, apk), against the fake
Instellar API and the real S3 server. Also what the v8 journey needs on its own: v8's
archive layout, and a public key file under any name."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from devkit.s3 import S3Server
from tests.integration.test_v8_journey import PAIR, REPOSITORY, _packages
from tests.support import rig, runner
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA, Instellar
from tests.support.workspace import git_workspace

WORKSPACE = "/home/runner/work/locomo/locomo"


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
