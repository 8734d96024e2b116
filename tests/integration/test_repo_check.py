"""``pakman repo check URL`` against a repository in the real S3 server, read anonymously
over HTTP as hosts read it; real apk-tools 3 installs from the same URL."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.s3 import S3Server
from pakman import keys
from pakman.repo import index
from tests.support.apkrepo import FOLDER, _keys, build
from tests.support.cli import one_line_error, run_pakman
from tests.support.http import http_server, trickle


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(keys.generate(2048), "acme-app.rsa.pub")


def _public_bucket(s3_server: S3Server, bucket: str) -> str:
    """Anyone may read it, as a bucket that serves a repository: its repository URL."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return f"{s3_server.endpoint}/{bucket}/alpine/v3.23/acme"


def _publish(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str, *names: str
) -> None:
    public, private = _keys(tmp_path, key)
    done = run_pakman(
        "repo", str(build(tmp_path / "tree", key, "1.0.0-r0", *names)), "--key", str(public),
        "--private-key", str(private), "--bucket", bucket, "--endpoint", s3_server.endpoint,
        "--branch", "v3.23", env=s3_server.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_check_reports_every_problem(
    tmp_path: Path, key: SigningKey, s3_server: S3Server, bucket: str
) -> None:
    _publish(tmp_path, key, s3_server, bucket, "app", "tool", "extra")
    url = _public_bucket(s3_server, bucket)
    client = s3_server.client()
    # Other bytes of the very size the index lists, control stream intact: a byte of the
    # data stream changed.
    content = os.urandom(512)
    noise = make_package(key, "noise", "1.0.0-r0", files={"n": content})
    write_repo(tmp_path / "noise" / "acme", key, [noise])
    public, private = _keys(tmp_path, key)
    done = run_pakman(
        "repo", str(tmp_path / "noise"), "--key", str(public), "--private-key", str(private),
        "--bucket", bucket, "--endpoint", s3_server.endpoint, "--branch", "v3.23",
        env=s3_server.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    at = len(noise.data) - 100  # inside the data stream, the last of the three
    tampered = noise.data[:at] + bytes([noise.data[at] ^ 1]) + noise.data[at + 1 :]
    client.put_object(
        Bucket=bucket,
        Key=f"{FOLDER}/noise-1.0.0-r0.apk",
        Body=tampered,
        CacheControl="public, max-age=31536000, immutable",
    )
    client.delete_object(Bucket=bucket, Key=f"{FOLDER}/tool-1.0.0-r0.apk")
    other = make_package(key, "app", "1.0.0-r0", files={"usr/share/app/v": os.urandom(4096)})
    client.put_object(Bucket=bucket, Key=f"{FOLDER}/app-1.0.0-r0.apk", Body=other.data)
    index_key = f"{FOLDER}/{index.INDEX_NAME}"
    body = client.get_object(Bucket=bucket, Key=index_key)["Body"].read()
    client.put_object(Bucket=bucket, Key=index_key, Body=body, CacheControl="max-age=86400")
    public, _ = _keys(tmp_path, key)
    checked = run_pakman("repo", "check", url, "--key", str(public))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    said = checked.stdout
    assert f"{url}/x86_64/APKINDEX.tar.gz: served with Cache-Control 'max-age=86400'" in said
    assert f"{url}/x86_64/tool-1.0.0-r0.apk: listed in the index, but HTTP 404" in said
    assert f"{url}/x86_64/app-1.0.0-r0.apk: " in said
    assert "served with Cache-Control None" in said  # overwritten without its headers
    assert "more than the" in said
    assert f"{url}/x86_64/noise-1.0.0-r0.apk: its data stream does not match its datahash" in said
    assert "extra-1.0.0-r0.apk" not in said  # the intact one
    assert "4 package(s): 5 problem(s)" in said
    stranger = SigningKey(keys.generate(2048), key.name)
    wrong = run_pakman(
        "repo", "check", url, "--key", str(stranger.write_public(tmp_path / "stranger"))
    )
    assert wrong.returncode == 1
    assert "bad signature: does not verify with acme-app.rsa.pub" in wrong.stdout


def test_a_trickling_repository_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    """--timeout is the whole run's deadline, as in every command: a server that sends a
    byte now and then (never idle for a read timeout) ends the check, exit 3."""

    public = tmp_path / "acme-app.rsa.pub"
    public.write_bytes(keys.generate(2048).public_pem)
    with http_server(trickle) as endpoint:
        result = run_pakman(
            "repo", "check", f"{endpoint}/alpine/v3.23/acme", "--key", str(public),
            "--timeout", "2", timeout=120,  # a guard for the test itself
        )  # fmt: skip
    one_line_error(result, 3, "repo-check: gave up after 2 s (--timeout)")
    assert "resumes" not in result.stderr  # a check has nothing to resume


def test_a_password_in_the_url_is_never_printed(tmp_path: Path) -> None:
    """apk reads a private repository from https://user:password@host/...: so does the
    check, and neither the password nor the user is in what it prints."""

    def missing(handler: BaseHTTPRequestHandler, method: str) -> None:
        handler.send_response(404)
        handler.send_header("content-length", "0")
        handler.end_headers()

    public = tmp_path / "acme-app.rsa.pub"
    public.write_bytes(keys.generate(2048).public_pem)
    with http_server(missing) as endpoint:
        url = endpoint.replace("http://", "http://deployer:s3cr3t-pw@") + "/alpine/v3.23/acme"
        result = run_pakman("repo", "check", url, "--key", str(public), "--json")
    assert result.returncode == 1, result.stderr
    assert "HTTP 404" in result.stdout
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    assert "deployer" not in result.stdout + result.stderr
