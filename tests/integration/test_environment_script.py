"""The rendered environment script, run by real bash, curl and jq against a fake LXD socket.

It is what hands every installation its variables, so it is executed, not just linted.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import rig
from tests.support.environment import Servers, lxd_servers, rendered_script

VARIABLES = {"PLAIN": "1", "SPACES": "two words", "EQUALS": "a=b", "QUOTE": 'it\'s "quoted"'}


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return rendered_script(tmp_path)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    with lxd_servers(tmp_path) as started:
        yield started


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


def source(
    script: Path, socket_path: Path, then: str, *, options: str = "", path: str = ""
) -> subprocess.CompletedProcess[str]:
    """Source the script in real bash (after ``options``), then run ``then``."""
    rig.need_tool("bash")
    return subprocess.run(
        ["bash", "-c", f'{options}source "$1"; {then}', "probe", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"PATH": f"{path}/usr/bin:/bin", "LXD_SOCKET": str(socket_path)},
    )


def curl_shim(tmp_path: Path, then: str) -> tuple[Path, Path]:
    """A curl on PATH that logs its arguments, then runs ``then``; (its folder, the log)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "curl.log"
    (shim / "curl").write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {log}\n{then}\n')
    (shim / "curl").chmod(0o755)
    return shim, log


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


def test_sourcing_is_safe_under_set_e(script: Path, servers: Any) -> None:
    """A caller with set -e and pipefail goes on past every failure inside the script."""
    routes, _, socket_path, _ = servers
    routes["/1.0/config/user.managed_by"] = (200, b"instellar")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_ENDPOINT"] = (200, b"http://127.0.0.1:1/x")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_DATA"] = (200, b"not base64 !")
    result = source(script, socket_path, "echo reached", options="set -euo pipefail; ")
    assert (result.returncode, result.stdout) == (0, "reached\n"), result.stderr


def test_no_socket_means_no_curl_call(script: Path, tmp_path: Path) -> None:
    """Without the LXD socket there is nothing to ask: curl is never called, so it is never
    handed an empty endpoint."""
    shim, log = curl_shim(tmp_path, f"echo >> {tmp_path / 'curl.log'}")
    result = source(script, tmp_path / "no.sock", "echo reached", path=f"{shim}:")
    assert result.stdout == "reached\n"
    assert not log.exists(), log.read_text()


def test_the_bot_token_is_not_on_curls_command_line(
    script: Path, servers: Any, tmp_path: Path
) -> None:
    routes, seen, socket_path, port = servers
    routes["/1.0/config/user.managed_by"] = (200, b"instellar")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_ENDPOINT"] = (
        200,
        f"http://127.0.0.1:{port}/installation".encode(),
    )
    routes["/1.0/config/user.INSTELLAR_BOT_TOKEN"] = (200, b"bot-token-123")
    routes["/installation"] = (200, payload())
    shim, log = curl_shim(tmp_path, f'exec {rig.need_tool("curl")} "$@"')
    result = source(script, socket_path, 'echo "$PLAIN"', path=f"{shim}:")
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
    assert {"path": "/installation", "authorization": "Bearer bot-token-123"} in seen
    assert "bot-token-123" not in log.read_text()
