"""The rendered environment script and the LXD and Instellar endpoints it asks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

from pakman import config, render
from pakman.identity import Identity
from tests.support.http import UnixHTTPServer, lxd_handler, serving
from tests.support.paths import V8_CONFIGS

Servers = tuple[dict[str, tuple[int, bytes]], list[dict[str, str]], Path, int]


def rendered_script(folder: Path) -> Path:
    """rails.yml's environment script, written into ``folder``."""
    cfg = config.load(V8_CONFIGS / "rails.yml")
    files = render.render(cfg, Identity("upmaru/locomo"))
    path = folder / "environment"
    path.write_text(files["locomo.environment"].text)
    return path


@contextlib.contextmanager
def lxd_servers(folder: Path) -> Iterator[Servers]:
    """An LXD socket and an HTTP API on 127.0.0.1 sharing routes: (routes, requests seen,
    socket path, API port)."""
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[dict[str, str]] = []
    socket_path = folder / "lxd.sock"
    lxd = UnixHTTPServer(str(socket_path), lxd_handler(routes, seen))
    api = ThreadingHTTPServer(("127.0.0.1", 0), lxd_handler(routes, seen))
    with serving(lxd, api):
        yield routes, seen, socket_path, api.server_address[1]
