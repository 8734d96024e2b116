"""The Instellar client against hostile and broken answers: redirects, answers of the wrong
shape, missing ids, Retry-After, nested, endless and compressed bodies. Each is one clear
error (exit 3) or a bounded retry, through the real CLI against small real servers."""

from __future__ import annotations

import gzip
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.support.cli import one_line_error
from tests.support.deployment import Built, _push_env, push
from tests.support.http import answer, http_server
from tests.support.instellar import AUTH, SHA, Instellar


def test_the_instellar_client_never_follows_a_redirect(
    tmp_path: Path, deployment_files: Built
) -> None:
    seen: list[str] = []

    def elsewhere(handler: BaseHTTPRequestHandler, method: str) -> None:
        seen.append(handler.headers.get("authorization", "") + handler.path)
        answer(handler, 200, b"{}")

    with http_server(elsewhere) as other:

        def redirect(handler: BaseHTTPRequestHandler, method: str) -> None:
            answer(handler, 307, location=f"{other}/steal")

        with http_server(redirect) as api:
            result = push(deployment_files, _push_env(tmp_path, api))
    one_line_error(result, 3, "POST /publish/automation/callback: redirected (307)")
    assert seen == []
    assert AUTH not in result.stdout + result.stderr


def test_api_answers_of_the_wrong_shape_are_errors_naming_the_path(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    api.queued[("GET", f"/publish/deployments/{SHA}")] = [(200, {"data": ["not", "a", "map"]}, {})]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint))
    one_line_error(result, 3, f"GET /publish/deployments/{SHA}: unexpected answer")


def test_a_deployment_without_an_id_never_posts_to_none(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    api.queued[("POST", "/publish/deployments")] = [(201, {"data": {"attributes": {}}}, {})]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint))
    one_line_error(result, 3, "no usable deployment id")
    assert not [p for p in api.paths() if "None" in p]


def test_retry_after_is_capped(tmp_path: Path, api: Instellar, deployment_files: Built) -> None:
    """A server asking for an hour's pause is retried within the backoff cap."""
    busy = (503, {"errors": "busy"}, {"Retry-After": "3600"})
    api.queued[("POST", "/publish/automation/callback")] = [busy, busy]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint), timeout=120)
    assert result.returncode == 0, result.stderr
    assert api.paths().count("POST /publish/automation/callback") == 3


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
