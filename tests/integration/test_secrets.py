"""Secrets (signing keys, S3 and API credentials) stay out of output, files and reprs."""

from __future__ import annotations

import json
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from devkit.s3 import S3Server
from pakman import keys
from tests.support.cli import one_line_error, run_bootstrap, run_pakman
from tests.support.deployment import Built, _push_env, publish_args, push
from tests.support.http import answer, http_server
from tests.support.instellar import Instellar
from tests.support.workspace import git_workspace
from tests.unit.test_secrets import KEY_ID, SECRET


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


# --- hostile input: each one clean error, nothing lost or leaked --------------------------


def test_a_token_straddling_the_message_cut_is_redacted_whole(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    """Redaction comes before truncation: no head of a token survives the cut.

    The pads put the token across the old 300-character cut of the JSON detail, leaving
    from 1 to 31 of its characters before it.
    """
    canary = "ZQ" + "j" * 30  # no head of it occurs anywhere else
    api.package_token = canary
    for pad in range(257, 288, 3):
        api.queued[("POST", "/publish/deployments")] = [
            (422, {"errors": {"detail": "x" * pad + canary}}, {})
        ]
        result = push(
            deployment_files,
            {**_push_env(tmp_path, api.endpoint), "INSTELLAR_PACKAGE_TOKEN": canary},
        )
        one_line_error(result, 3, "unexpected status 422")
        assert "ZQ" not in result.stderr, pad


def test_endpoint_credentials_and_query_strings_never_print(deployment_files: Built) -> None:
    endpoint = f"http://{SECRET}:{SECRET}@127.0.0.1:9/?X-Amz-Signature={SECRET}"
    result = run_pakman(
        *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
        env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
        timeout=180,
    )
    one_line_error(result, 3, "storage s3://releases at http://127.0.0.1:9/")
    assert SECRET not in result.stdout + result.stderr


def _leaks(result: subprocess.CompletedProcess[str], secret: str) -> bool:
    text = result.stdout + result.stderr
    return any(form in text for form in (secret, secret.strip(), repr(secret)[1:-1]))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_ACCESS_KEY_ID", KEY_ID + "\n"),
        ("AWS_SECRET_ACCESS_KEY", "secret/Boundary+Key\r\n"),
        ("AWS_SESSION_TOKEN", "session-TOKEN-boundary\r\nInjected: 1"),
    ],
)
def test_a_credential_with_a_control_character_is_refused_by_name(
    name: str, value: str, s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    env = {**s3_server.env(), "AWS_ACCESS_KEY_ID": KEY_ID, name: value}
    result = run_pakman(*publish_args(deployment_files, "--bucket", bucket), env=env)
    one_line_error(result, 2, f"{name}: must be printable ASCII")
    assert not _leaks(result, value)
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_an_instellar_token_with_a_trailing_newline_is_refused_by_name(
    tmp_path: Path, deployment_files: Built
) -> None:
    token = "package-TOKEN-boundary-77\n"
    env = {**_push_env(tmp_path, "http://127.0.0.1:9"), "INSTELLAR_PACKAGE_TOKEN": token}
    result = push(deployment_files, env)
    one_line_error(result, 2, "INSTELLAR_PACKAGE_TOKEN: must be printable ASCII")
    assert not _leaks(result, token)


def test_an_api_token_with_a_newline_is_an_api_error_never_shown(
    tmp_path: Path, deployment_files: Built
) -> None:
    token = "from-the-API-token-99\r\nX-Injected: yes"

    def respond(handler: BaseHTTPRequestHandler, method: str) -> None:
        body = json.dumps({"data": {"token": token}}).encode()
        answer(handler, 201, body, content_type="application/json")

    with http_server(respond) as api:
        result = push(deployment_files, _push_env(tmp_path, api))
    one_line_error(result, 3, "POST /publish/automation/callback: data.token: must be printable")
    assert not _leaks(result, token)
