"""In-process HTTP serving on 127.0.0.1 (and on a unix socket, as LXD's): serve servers on
threads, answer every request with one function, play LXD's /dev/lxd/sock."""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextlib.contextmanager
def serving(*servers: socketserver.BaseServer) -> Iterator[None]:
    """Serve each on a thread of its own until the block ends.

    The listening socket is non-blocking: a connection dropped between ``select`` and
    ``accept`` would otherwise block the loop in ``accept``, and ``shutdown`` with it.
    """
    for server in servers:
        server.socket.setblocking(False)  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            # Bounded: a loop stuck anyway must not hang the test that used it.
            stopping = threading.Thread(target=server.shutdown, daemon=True)
            stopping.start()
            stopping.join(10)
            server.server_close()


Respond = Callable[[BaseHTTPRequestHandler, str], None]


@contextlib.contextmanager
def http_server(respond: Respond) -> Iterator[str]:
    """A tiny real HTTP server on 127.0.0.1; ``respond`` answers every request. Yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if self.headers.get("expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            self.rfile.read(length)
            with contextlib.suppress(OSError):
                respond(self, self.command)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def trickle(handler: BaseHTTPRequestHandler, method: str) -> None:
    """A 200 promising a megabyte, then a byte every half second: never idle long enough
    for a read timeout, so only a whole-run deadline ends the client."""
    handler.send_response(200)
    handler.send_header("content-length", "1000000")
    handler.end_headers()
    for _ in range(600):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.5)


def lxd_handler(routes: dict[str, tuple[int, bytes]], seen: list[dict[str, str]]) -> type:
    """Answers GETs from ``routes`` (path -> status, body) and records each in ``seen``."""

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
    """An HTTP server on a unix socket, as LXD's /dev/lxd/sock."""

    daemon_threads = True
