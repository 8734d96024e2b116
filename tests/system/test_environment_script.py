"""The rendered environment script, run by real bash, curl and jq against a fake LXD socket.

It is what hands every installation its variables, so it is executed, not just linted.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests.integration.test_environment_script import payload
from tests.support import rig
from tests.support.environment import Servers, lxd_servers, rendered_script
from tests.support.paths import V8_CONFIGS


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return rendered_script(tmp_path)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    with lxd_servers(tmp_path) as started:
        yield started


@pytest.fixture
def rendered_files() -> dict[str, render.RenderedFile]:
    return render.render(config.load(V8_CONFIGS / "rails.yml"), Identity("upmaru/locomo"))


def env_exec(
    files: dict[str, render.RenderedFile], socket_path: Path, command: str, path: str = ""
) -> subprocess.CompletedProcess[str]:
    """Install bin/environment and bin/env-exec where the package puts them, then run
    env-exec as the init script does: in a private mount namespace, over a tmpfs /var/lib."""
    for tool in ("bash", "curl", "jq", "unshare"):
        rig.need_tool(tool)
    rig.need_root()
    setup = """
        set -e
        mount -t tmpfs tmpfs /var/lib
        mkdir -p /var/lib/locomo/bin
        printf '%s' "$1" > /var/lib/locomo/bin/environment
        printf '%s' "$2" > /var/lib/locomo/bin/env-exec
        chmod 755 /var/lib/locomo/bin/environment /var/lib/locomo/bin/env-exec
        exec /var/lib/locomo/bin/env-exec "$3"
    """
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            setup,
            "setup",
            files["locomo.environment"].text,
            files["locomo.env-exec"].text,
            command,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": f"{path}/usr/bin:/bin:/usr/sbin:/sbin", "LXD_SOCKET": str(socket_path)},
    )


ECHO = 'echo "ran in $PWD with PLAIN=${PLAIN-unset}"'


def test_env_exec_runs_with_no_lxd_socket(
    rendered_files: dict[str, render.RenderedFile], tmp_path: Path
) -> None:
    result = env_exec(rendered_files, tmp_path / "no.sock", ECHO)
    assert (result.returncode, result.stdout) == (0, "ran in /var/lib/locomo with PLAIN=unset\n")


def test_env_exec_runs_when_lxd_answers_404(
    rendered_files: dict[str, render.RenderedFile], servers: Any
) -> None:
    _, seen, socket_path, _ = servers
    result = env_exec(rendered_files, socket_path, ECHO)
    assert (result.returncode, result.stdout) == (0, "ran in /var/lib/locomo with PLAIN=unset\n")
    assert seen  # LXD was asked, and said 404


def test_env_exec_runs_when_the_api_is_unreachable(
    rendered_files: dict[str, render.RenderedFile], servers: Any
) -> None:
    routes, _, socket_path, _ = servers
    routes["/1.0/config/user.managed_by"] = (200, b"instellar")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_ENDPOINT"] = (200, b"http://127.0.0.1:1/x")
    routes["/1.0/config/user.INSTELLAR_BOT_TOKEN"] = (200, b"bot-token")
    routes["/1.0/config/user.INSTELLAR_INSTALLATION_DATA"] = (200, base64.b64encode(payload()))
    result = env_exec(rendered_files, socket_path, ECHO)
    # The stored copy of the installation data stands in for the API.
    assert (result.returncode, result.stdout) == (0, "ran in /var/lib/locomo with PLAIN=1\n")


def test_env_exec_passes_on_the_commands_exit_code(
    rendered_files: dict[str, render.RenderedFile], tmp_path: Path
) -> None:
    assert env_exec(rendered_files, tmp_path / "no.sock", "exit 3").returncode == 3
