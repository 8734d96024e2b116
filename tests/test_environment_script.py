"""The rendered environment script, run by real bash, curl and jq against a fake LXD socket.

It is what hands every installation its variables, so it is executed, not just linted.
"""

from __future__ import annotations

import base64
import json
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests import rig
from tests.conftest import V8_CONFIGS

VARIABLES = {"PLAIN": "1", "SPACES": "two words", "EQUALS": "a=b", "QUOTE": 'it\'s "quoted"'}


def _handler(routes: dict[str, tuple[int, bytes]], seen: list[dict[str, str]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def address_string(self) -> str:  # unix sockets have no peer address
            return "lxd"

        def do_GET(self) -> None:
            seen.append({"path": self.path, "authorization": self.headers.get("authorization", "")})
            status, body = routes.get(self.path, (404, b""))
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@pytest.fixture
def script(tmp_path: Path) -> Path:
    cfg = config.load(V8_CONFIGS / "rails.yml")
    files = render.render(cfg, Identity("upmaru/locomo"))
    path = tmp_path / "environment"
    path.write_text(files["locomo.environment"].text)
    return path


@pytest.fixture
def servers(
    tmp_path: Path,
) -> Iterator[tuple[dict[str, tuple[int, bytes]], list[dict[str, str]], Path, int]]:
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[dict[str, str]] = []
    socket_path = tmp_path / "lxd.sock"
    lxd = UnixHTTPServer(str(socket_path), _handler(routes, seen))
    api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(routes, seen))
    for server in (lxd, api):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield routes, seen, socket_path, api.server_address[1]
    for server in (lxd, api):
        server.shutdown()
        server.server_close()


def run(script: Path, socket_path: Path) -> dict[str, str]:
    for tool in ("bash", "curl", "jq"):
        rig.need_tool(tool)
    names = " ".join(VARIABLES)
    probe = f'source "$1"; for n in {names}; do printf "%s=%s\\0" "$n" "${{!n-UNSET}}"; done'
    result = subprocess.run(
        ["bash", "-c", probe, "probe", str(script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "LXD_SOCKET": str(socket_path)},
    )
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


def payload() -> bytes:
    return json.dumps({"data": {"attributes": {"variables": VARIABLES}}}).encode()


def test_uplink_managed_instance(script: Path, servers: Any) -> None:
    routes, seen, socket_path, port = servers
    routes["/1.0/config/user.managed_by"] = (200, b"uplink")
    routes["/1.0/config/user.install_variables_endpoint"] = (
        200,
        f"http://127.0.0.1:{port}/vars".encode(),
    )
    routes["/vars"] = (200, payload())
    assert run(script, socket_path) == VARIABLES
    assert {"path": "/vars", "authorization": ""} in seen  # uplink needs no token


def test_instellar_managed_instance_sends_the_bot_token(script: Path, servers: Any) -> None:
    routes, seen, socket_path, port = servers
    routes["/1.0/config/user.managed_by"] = (200, b"instellar")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_ENDPOINT"] = (
        200,
        f"http://127.0.0.1:{port}/installation".encode(),
    )
    routes["/1.0/config/user.INSTELLAR_BOT_TOKEN"] = (200, b"bot-token")
    routes["/installation"] = (200, payload())
    assert run(script, socket_path) == VARIABLES
    assert {"path": "/installation", "authorization": "Bearer bot-token"} in seen


def test_falls_back_to_the_stored_installation_data(script: Path, servers: Any) -> None:
    routes, _, socket_path, port = servers
    routes["/1.0/config/user.managed_by"] = (200, b"uplink")
    routes["/1.0/config/user.install_variables_endpoint"] = (
        200,
        f"http://127.0.0.1:{port}/down".encode(),
    )
    routes["/down"] = (502, b"<html>bad gateway</html>")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_DATA"] = (200, base64.b64encode(payload()))
    assert run(script, socket_path) == VARIABLES


def test_nothing_reachable_exports_nothing_and_does_not_fail(script: Path, servers: Any) -> None:
    _, _, socket_path, _ = servers
    assert run(script, socket_path) == dict.fromkeys(VARIABLES, "UNSET")
