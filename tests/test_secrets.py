"""Secrets (signing keys, S3 and API credentials) stay out of output, files and reprs."""

from __future__ import annotations

from pathlib import Path

from pakman import keys
from pakman.publish.instellar import Client, Storage
from pakman.storage.s3 import S3Store
from tests.support.cli import run_bootstrap, run_pakman
from tests.support.workspace import git_workspace

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


def test_reprs_hide_credentials() -> None:
    store = S3Store(
        bucket="b",
        endpoint="https://user:pw@s3.example.com",
        access_key_id=SECRET,
        secret_access_key=SECRET,
    )
    client = Client(endpoint="https://api", auth_token=SECRET, package_token=SECRET)
    storage = Storage("https://s3", "r", "b", SECRET, SECRET)
    for thing in (store, client, storage, keys.generate(2048)):
        assert SECRET not in repr(thing)
        assert "PRIVATE KEY" not in repr(thing)
    assert store.describe() == "s3://b at https://s3.example.com"  # userinfo dropped


def test_bootstrap_leaves_key_material_only_in_the_key_files(tmp_path: Path) -> None:
    workspace = git_workspace(tmp_path / "ws")
    pair = keys.generate(2048)
    body = pair.private_pem.decode().splitlines()[1]
    result = run_bootstrap(
        workspace, tmp_path / "home", tmp_path / "apk-keys", pair.private_pem.decode()
    )
    assert result.returncode == 0, result.stderr
    assert body not in result.stdout + result.stderr
    holders = [
        p for p in tmp_path.rglob("*") if p.is_file() and body in p.read_text(errors="ignore")
    ]
    assert holders == [tmp_path / "home" / ".abuild" / "upmaru-locomo.rsa"]


def test_endpoint_credentials_are_redacted_in_errors(tmp_path: Path) -> None:
    packages = tmp_path / "packages" / "acme" / "x86_64"
    packages.mkdir(parents=True)
    (packages / "a-1.0-r0.apk").write_bytes(b"x")
    result = run_pakman(
        "publish",
        str(tmp_path / "packages"),
        "--archive",
        str(tmp_path / "p.zip"),
        "--bucket",
        "releases",
        "--repository",
        "acme/app",
        "--sha",
        "abc1234",
        "--no-verify",
        "--endpoint",
        f"ftp://{SECRET}:{SECRET}@s3.example.com",
        env={"AWS_ACCESS_KEY_ID": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    assert result.returncode == 2
    assert "--endpoint: must be an http(s) URL (got 'ftp://s3.example.com')" in result.stderr
    assert SECRET not in result.stdout + result.stderr
