"""The error boundary, round 3: hostile streams, names, credentials and answers.

Every case runs the real CLI (real pipes, closed and full file descriptors, the real S3
server of the tests and small misbehaving servers of their own). The contract: one
``error:`` line naming the field, file or endpoint; exit 1 verification, 2 bad input,
3 storage/API; no traceback; no secret in any form.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from devkit.s3 import S3Server
from pakman.errors import ConfigError, redact
from pakman.storage.options import StoreOptions
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built, _push_env, publish_args, push
from tests.support.faults import FaultProxy
from tests.support.http import answer, http_server
from tests.support.instellar import SHA
from tests.support.paths import V8_CONFIGS

KEY_ID = "AKIABOUNDARYTESTKEY1"


def _leaks(result: subprocess.CompletedProcess[str], secret: str) -> bool:
    text = result.stdout + result.stderr
    return any(form in text for form in (secret, secret.strip(), repr(secret)[1:-1]))


# --- credentials -----------------------------------------------------------------------


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


def test_module_credentials_are_checked_as_the_cli_checks_them() -> None:
    with pytest.raises(ConfigError, match="secret-access-key: must be printable ASCII"):
        StoreOptions.resolve({}, bucket="b", access_key_id=KEY_ID, secret_access_key="a\nb")


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


def test_redaction_catches_escaped_and_encoded_forms() -> None:
    secret = "AKIA-REDACT-ME\n"
    for shown in (repr(secret), "AKIA-REDACT-ME%0A", str(secret.encode()), "AKIA-REDACT-ME"):
        assert "REDACT" not in redact(f"Credential={shown}/20260101", [secret]), shown


# --- storage transport -----------------------------------------------------------------


def _publish_through_cuts(
    s3_server: S3Server, bucket: str, built: Built, every: int
) -> tuple[subprocess.CompletedProcess[str], FaultProxy]:
    """Publish through a proxy that cuts the first ``every`` error answers' bodies."""
    proxy = FaultProxy(s3_server.port, "cut-errors", every=every).start()
    try:
        env = {**s3_server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        return run_pakman(*publish_args(built, "--bucket", bucket), env=env), proxy
    finally:
        proxy.stop()


def test_a_cut_error_body_is_retried(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    """A NoSuchKey answer (the manifest not there yet) broken off halfway, then a reset:
    urllib3's ProtocolError used to escape as 'unexpected', exit 1."""
    result, proxy = _publish_through_cuts(s3_server, bucket, deployment_files, every=2)
    assert proxy.faults == 2  # both cut, then retried
    assert result.returncode == 0, result.stderr
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"deployments/acme/app/{SHA}/manifest.json" in keys


def test_error_bodies_that_always_break_off_are_a_storage_error(
    s3_server: S3Server, bucket: str, deployment_files: Built
) -> None:
    result, _ = _publish_through_cuts(s3_server, bucket, deployment_files, every=1000)
    one_line_error(result, 3, f"storage s3://{bucket}", "the answer broke off after 5 attempts")
    assert "ProtocolError" in result.stderr


# --- the packages tree ------------------------------------------------------------------


def test_verify_merge_and_publish_agree_on_an_unknown_arch(
    deployment_files: Built, tmp_path: Path
) -> None:
    """A copy of x86_64/ named mips/, index and all: verify said ok, the others exit 2."""
    acme = deployment_files.packages / "acme"
    shutil.copytree(acme / "x86_64", acme / "mips")
    key = str(deployment_files.public_key)
    results = [
        run_pakman("verify", str(deployment_files.packages), "--key", key),
        run_pakman("merge", str(deployment_files.packages), "--output", str(tmp_path / "m.zip")),
        run_pakman(
            *publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
        ),
    ]
    for result in results:
        one_line_error(result, 2, "acme/mips/APKINDEX.tar.gz: not at ", "with a known <arch>")
    assert not (tmp_path / "m.zip").exists()
    assert not (tmp_path / "store").exists()


def test_a_file_name_that_is_not_utf8_is_bad_input_shown_safely(
    deployment_files: Built, tmp_path: Path
) -> None:
    folder = os.fsencode(deployment_files.packages / "acme" / "x86_64")
    with open(folder + b"/x\xff.apk", "wb") as handle:
        handle.write(b"x")
    key = str(deployment_files.public_key)
    for args in (
        ["verify", str(deployment_files.packages), "--key", key],
        ["merge", str(deployment_files.packages), "--output", str(tmp_path / "m.zip")],
        publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
    ):
        result = run_pakman(*args)
        one_line_error(result, 2, "acme/x86_64/x\\xff.apk: the name is not valid UTF-8")


# --- output streams ----------------------------------------------------------------------


def _cli(args: list[str], stdout: int, **env: str) -> subprocess.CompletedProcess[bytes]:
    """The `pakman` command with real file descriptors: /dev/full, pipes."""
    return subprocess.run(
        [sys.executable, "-m", "pakman.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        check=False,
        timeout=300,
        close_fds=True,
    )


def _closed_stdout(args: list[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    """As a shell runs `pakman ... >&-`: no file descriptor 1 at all."""
    script = 'exec "$@" >&-'
    return subprocess.run(
        ["sh", "-c", script, "sh", sys.executable, "-m", "pakman.cli", *args],
        capture_output=False,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_verify_keeps_its_own_exit_code_whatever_becomes_of_its_output(
    deployment_files: Built, unbuffered: str
) -> None:
    args = ["verify", str(deployment_files.packages), "--key", str(deployment_files.public_key)]
    env = {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {}
    with open("/dev/full", "wb") as full:
        outcomes = [_closed_stdout(args, **env), _cli(args, full.fileno(), **env)]
        for done in outcomes:
            assert done.returncode == 0, done.stderr
            assert b"Traceback" not in done.stderr
        # A failing tree keeps its exit 1 on a full disk too.
        package = next((deployment_files.packages / "acme" / "x86_64").glob("*.apk"))
        package.write_bytes(package.read_bytes()[:-10] + b"0123456789")
        failed = _cli(args, full.fileno(), **env)
    assert failed.returncode == 1, failed.stderr
    assert b"Traceback" not in failed.stderr


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_publish_finishes_when_its_reader_goes_away(
    s3_server: S3Server, bucket: str, tmp_path: Path, unbuffered: str
) -> None:
    """`pakman publish ... 2>&1 | head -3` used to stop the upload after 13 of 44 objects."""
    from tests.support.deployment import build_deployment

    built = build_deployment(tmp_path, count=20)
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": unbuffered}
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman.cli", *publish_args(built, "--bucket", bucket)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    head = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()  # the reader is gone
    assert process.wait(300) == 0, head
    listing = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listing) == built.files + 2  # every package, the archive, the manifest


# --- --json -------------------------------------------------------------------------------


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_json_prints_one_object_on_every_exit(deployment_files: Built, tmp_path: Path) -> None:
    key = str(deployment_files.public_key)
    (deployment_files.packages / "acme" / ".DS_Store").write_bytes(b"x")
    stray = run_pakman("verify", str(deployment_files.packages), "--key", key, "--json")
    assert stray.returncode == 2
    refused = _json(stray)
    assert refused["ok"] is False
    assert refused["exit_code"] == 2
    assert refused["errors"] == [f"{deployment_files.packages}/acme/.DS_Store: not an .apk or"
                                 " APKINDEX.tar.gz"]  # fmt: skip
    missing = _json(run_pakman("verify", str(tmp_path / "nowhere"), "--key", key, "--json"))
    assert missing["exit_code"] == 2
    assert missing["errors"] == [f"{tmp_path / 'nowhere'}: no such directory"]
    (deployment_files.packages / "acme" / ".DS_Store").unlink()
    ok = _json(run_pakman("verify", str(deployment_files.packages), "--key", key, "--json"))
    assert (ok["ok"], ok["exit_code"], ok["errors"], ok["packages"]) == (True, 0, [], 6)
    package = next((deployment_files.packages / "acme" / "x86_64").glob("*.apk"))
    package.write_bytes(package.read_bytes()[:-10] + b"0123456789")
    store = f"file://{tmp_path / 'store'}"
    failed = run_pakman(*publish_args(deployment_files, "--store", store, "--json"))
    assert failed.returncode == 1
    report = _json(failed)
    assert report["exit_code"] == 1
    assert any("publish refused: verification failed" in str(e) for e in report["errors"])  # type: ignore[attr-defined]


def test_the_help_documents_the_json_shape() -> None:
    for command in ("verify", "publish", "push"):
        text = run_pakman(command, "--help").stdout
        assert '"exit_code": N, "errors": [' in text, command


# --- config strings and one-line errors ---------------------------------------------------

CONFIG = """\
dependencies: {runtime: [bash]}
build: {command: make, destinations: [bin]}
run:
  name: app
  commands:
    - {name: a, binary: app, call: "migrate\\rnow"}
    - {name: b, binary: app, call: "migrate\\0now"}
    - {name: c, binary: app, call: "migrate\\u2028now"}
    - {name: d, binary: app, call: .inf}
  services: [{name: web, binary: app}]
kits: [{name: web, sizes: [{cpu: .nan}]}]
"""


def test_control_characters_and_non_finite_numbers_are_refused_by_field(tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(CONFIG)
    result = run_pakman("check", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = [
        "run.commands[0].call: must not hold control characters or line separators"
        " (got 'migrate\\rnow')",
        "run.commands[1].call: must not hold control characters or line separators"
        " (got 'migrate\\x00now')",
        "run.commands[2].call: must not hold control characters or line separators"
        " (got 'migrate\\u2028now')",
        "run.commands[3].call: must be a finite number (got inf)",
    ]
    for line in expected:
        assert f"error: instellar.yml: {line}" in lines, result.stderr
    assert any(".cpu: must be a finite number" in line for line in lines), result.stderr


def test_a_name_with_a_newline_stays_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "pack\nages"
    result = run_pakman("verify", str(folder), "--key", str(V8_CONFIGS / "rails.yml"))
    one_line_error(result, 2)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run_pakman("merge", str(folder), "--no-verify", "--output", str(tmp_path / "z"))
    assert result.stderr.strip() == f"error: {tmp_path}/pack\\nages: no such directory"


# --- hostile Instellar answers -------------------------------------------------------------


def _hostile(
    tmp_path: Path, deployment_files: Built, respond: object
) -> subprocess.CompletedProcess[str]:
    with http_server(respond) as api:  # type: ignore[arg-type]
        return push(deployment_files, _push_env(tmp_path, api), timeout=120)


def test_deeply_nested_json_is_an_api_error(tmp_path: Path, deployment_files: Built) -> None:
    def respond(handler: BaseHTTPRequestHandler, method: str) -> None:
        answer(handler, 201, b"[" * 100_000, content_type="application/json")

    result = _hostile(tmp_path, deployment_files, respond)
    one_line_error(result, 3, "POST /publish/automation/callback: answer nested too deeply")


def test_an_endless_answer_is_cut_off(tmp_path: Path, deployment_files: Built) -> None:
    def respond(handler: BaseHTTPRequestHandler, method: str) -> None:
        handler.send_response(201)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        chunk = b"x" * 65536
        for _ in range(50_000):  # bounded: about 3 GB, far past any cap
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    result = _hostile(tmp_path, deployment_files, respond)
    one_line_error(
        result, 3, "POST /publish/automation/callback: answer larger than 1 MiB (after decoding)"
    )


def test_a_compression_bomb_is_cut_off(tmp_path: Path, deployment_files: Built) -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)

    def respond(handler: BaseHTTPRequestHandler, method: str) -> None:
        answer(handler, 201, bomb, content_type="application/json", content_encoding="gzip")

    result = _hostile(tmp_path, deployment_files, respond)
    one_line_error(
        result, 3, "POST /publish/automation/callback: answer larger than 1 MiB (after decoding)"
    )
