"""Local servers for the publish tests: moto's real S3 server, a fault proxy, a fake Instellar.

moto runs with authentication on (INITIAL_NO_AUTH_ACTION_COUNT), so wrong
credentials get a genuine 403 from the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from tests import rig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ask a server to stop; kill it if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


@dataclass
class S3Server:
    endpoint: str
    port: int
    access_key_id: str
    secret_access_key: str
    pid: int = 0  # the server process, for benchmarks that read its CPU time

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }


@contextlib.contextmanager
def moto_server(auth: bool = False) -> Iterator[S3Server]:
    """moto's S3 server. With ``auth``, unknown credentials get a real 403.

    Auth stays off otherwise: moto's signature check mishandles '/' in query
    strings (ListObjectsV2 with Prefix="a/"), which real S3 accepts.
    """
    binary = rig.need_tool("moto_server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3" if auth else "inf"},
    )
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        if not auth:
            yield S3Server(
                endpoint, port, "AKIAMOTOTESTKEY00001", "moto-secret-Zq8x/T3st+Key", process.pid
            )
            return
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="publisher")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="publisher", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="publisher")["AccessKey"]
        yield S3Server(endpoint, port, key["AccessKeyId"], key["SecretAccessKey"], process.pid)
    finally:
        stop(process)


@contextlib.contextmanager
def versitygw_server() -> Iterator[S3Server]:
    """A real S3 server: versitygw over a fresh folder, its own credentials, on 127.0.0.1.

    It checks every checksum it is sent (BadDigest), keeps CRC-32s and composite
    multipart checksums, lists parts with theirs, refuses wrong signatures, and honours
    If-Match and If-None-Match. MinIO, the issue's first choice, is not served by the Go
    module proxy here; versitygw (Apache-2.0) is built the same way, by scripts/test.sh.
    """
    binary = rig.need_tool("versitygw")
    port = free_port()
    access_key_id = "AKIA" + secrets.token_hex(8).upper()
    secret_access_key = secrets.token_urlsafe(30)
    with tempfile.TemporaryDirectory(prefix="pakman-s3-") as data:
        process = subprocess.Popen(
            [binary, "--port", f"127.0.0.1:{port}", "--quiet", "posix", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={
                "PATH": os.environ.get("PATH", ""),
                "ROOT_ACCESS_KEY": access_key_id,
                "ROOT_SECRET_KEY": secret_access_key,
            },
        )
        try:
            wait_for_port(port)
            endpoint = f"http://127.0.0.1:{port}"
            yield S3Server(endpoint, port, access_key_id, secret_access_key, process.pid)
        finally:
            stop(process)


# --- a fault-injecting HTTP proxy ------------------------------------------------------


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> bytes | None:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer.extend(chunk)
    index = buffer.index(marker) + len(marker)
    head = bytes(buffer[:index])
    del buffer[:index]
    return head


def _read_exact(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        chunk = sock.recv(max(65536, size - len(buffer)))
        if not chunk:
            raise ConnectionError("short body")
        buffer.extend(chunk)
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


def _read_body(sock: socket.socket, buffer: bytearray, head: bytes) -> bytes:
    headers = head.decode("latin-1").lower()
    if "transfer-encoding: chunked" in headers:
        body = bytearray()
        while True:
            line = _read_until(sock, buffer, b"\r\n") or b""
            body += line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            body += _read_exact(sock, buffer, size + 2)
            if size == 0:
                # trailers end with an empty line
                while not body.endswith(b"\r\n\r\n"):
                    body += _read_until(sock, buffer, b"\r\n") or b"\r\n"
                return bytes(body)
    match = re.search(r"content-length:\s*(\d+)", headers)
    return _read_exact(sock, buffer, int(match.group(1))) if match else b""


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dropped connection looks to the client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


@dataclass
class FaultProxy:
    """Forwards HTTP requests to ``upstream``; every ``every``-th request meets a fault.

    modes: ``reset`` (half before the server sees the request, half after it applied it),
    ``503`` (S3's SlowDown), ``delay`` (each request waits ``delay`` seconds); and, for
    every request, ``plain`` (answers lose their ``x-amz-checksum-*`` headers, as from a
    store without checksum support) and ``corrupt`` (``plain``, and every uploaded body
    has its last byte flipped on the way); ``cut-errors``: the first ``every`` error
    answers with a body are cut halfway through it, then the connection is reset; ``lie``
    (for a store that checks no signature): every uploaded body is changed, sent without
    its checksum headers, and answered with the client's own CRC-32 or SHA-256, as if kept;
    ``unconditional`` (for a store that checks no signature): requests lose their
    ``If-Match`` and ``If-None-Match`` headers, as on a store that ignores them.
    """

    upstream: int
    mode: str
    every: int = 4
    delay: float = 0.0
    requests: int = 0
    faults: int = 0
    port: int = 0
    active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    def start(self) -> FaultProxy:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting, then let requests already read reach the server."""
        if self._server:
            self._server.close()
        deadline = time.monotonic() + 30
        while self.active and time.monotonic() < deadline:
            time.sleep(0.01)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream_box: list[socket.socket] = []
        inbound, outbound = bytearray(), bytearray()
        try:
            while True:
                head = _read_until(client, inbound, b"\r\n\r\n")
                if head is None:
                    return
                if b"expect: 100-continue" in head.lower():
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = re.sub(rb"(?i)expect: 100-continue\r\n", b"", head)
                body = _read_body(client, inbound, head)
                with self._lock:
                    self.requests += 1
                    self.active += 1
                    number = self.requests
                try:
                    if not self._forward(client, head, body, number, outbound, upstream_box):
                        return
                finally:
                    with self._lock:
                        self.active -= 1
        except OSError:
            return
        finally:
            if upstream_box:
                upstream_box[0].close()
            with contextlib.suppress(OSError):
                client.close()

    def _forward(
        self,
        client: socket.socket,
        head: bytes,
        body: bytes,
        number: int,
        outbound: bytearray,
        upstream_box: list[socket.socket],
    ) -> bool:
        """Answer one request; False once the client connection is finished."""
        fault = number % self.every == 0 and self.mode in ("reset", "503")
        if self.mode == "delay":
            time.sleep(self.delay)
        if fault and self.mode == "503":
            self._count()
            client.sendall(SLOW_DOWN)
            client.close()
            return False
        if fault and (number // self.every) % 2 == 0:
            self._count()
            _reset(client)  # before the server sees the request
            return False
        if not upstream_box:
            upstream_box.append(socket.create_connection(("127.0.0.1", self.upstream)))
        upstream = upstream_box[0]
        claimed = None
        if self.mode in ("corrupt", "lie") and head.startswith(b"PUT ") and body:
            body = body[:-1] + bytes([body[-1] ^ 1])
        if self.mode == "lie" and head.startswith(b"PUT "):
            # Send no checksum upstream, and answer with the client's own, as if checked.
            found = re.search(rb"(?im)^(x-amz-checksum-(?:crc32|sha256)): *([^\r\n]+)\r\n", head)
            claimed = found.group(1) + b": " + found.group(2) if found else None
            head = re.sub(
                rb"(?im)^x-amz-(checksum-[a-z0-9]+|sdk-checksum-algorithm|trailer):[^\r\n]*\r\n",
                b"",
                head,
            )
        if self.mode == "unconditional":  # a store that ignores conditional writes
            head = re.sub(rb"(?im)^if-(none-)?match:[^\r\n]*\r\n", b"", head)
        upstream.sendall(head + body)
        response_head = _read_until(upstream, outbound, b"\r\n\r\n")
        if response_head is None:
            return False
        method = head.split(b" ", 1)[0]
        status = int(response_head.split(b" ")[1])
        no_body = method == b"HEAD" or status in (204, 304)
        response_body = b"" if no_body else _read_body(upstream, outbound, response_head)
        if fault:
            self._count()
            _reset(client)  # the server applied it; the client never hears back
            return False
        if self.mode == "cut-errors" and status >= 400 and response_body:
            with self._lock:
                cut = self.faults < self.every
                self.faults += cut
            if cut:  # the error's body broken off halfway, then the connection reset
                client.sendall(response_head + response_body[: len(response_body) // 2])
                _reset(client)
                return False
        if self.mode in ("plain", "corrupt", "lie"):
            response_head = re.sub(rb"(?im)^x-amz-checksum-[^\r\n]*\r\n", b"", response_head)
        if claimed is not None:
            response_head = response_head.replace(b"\r\n", b"\r\n" + claimed + b"\r\n", 1)
        client.sendall(response_head + response_body)
        return True

    def _count(self) -> None:
        with self._lock:
            self.faults += 1


# --- a fake OpsMaru/Instellar API ------------------------------------------------------


@dataclass
class Instellar:
    """The v8 endpoints, with their status codes, over real HTTP on 127.0.0.1."""

    auth_token: str
    package_token: str
    storage: dict[str, Any]
    session_token: str = "session-token-for-tests"
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    fail: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    # Answers given once each, before the normal one: (status, body, extra headers).
    queued: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = field(
        default_factory=dict
    )
    port: int = 0
    _serving: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.calls]

    def start(self) -> Instellar:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body: Any = json.loads(self.rfile.read(length)) if length else {}
                api.calls.append((method, self.path, body))
                if api.queued.get((method, self.path)):
                    self._reply(*api.queued[(method, self.path)].pop(0))
                    return
                if (method, self.path) in api.fail:
                    self._reply(*api.fail[(method, self.path)])
                    return
                if self.path == "/publish/automation/callback" and method == "POST":
                    if body == {"auth_token": api.auth_token}:
                        self._reply(201, {"data": {"token": api.session_token}})
                    else:
                        self._reply(404, {"errors": {"detail": "Not Found"}})
                    return
                authorized = (
                    self.headers.get("authorization") == f"Bearer {api.session_token}"
                    and self.headers.get("x-instellar-package-token") == api.package_token
                )
                if not authorized:
                    self._reply(401, {"errors": {"detail": "Unauthorized"}})
                    return
                parts = self.path.strip("/").split("/")
                if method == "GET" and parts[:2] == ["publish", "deployments"] and len(parts) == 3:
                    found = api.deployments.get(parts[2])
                    self._reply(200, {"data": {"attributes": found}}) if found else self._reply(
                        404, None
                    )
                elif method == "GET" and self.path == "/publish/storage":
                    self._reply(200, {"data": {"attributes": api.storage}})
                elif method == "POST" and self.path == "/publish/deployments":
                    deployment = body["deployment"]
                    existing = api.deployments.get(deployment["hash"])
                    if existing:
                        self._reply(200, {"data": {"attributes": existing}})
                    else:
                        record = {"id": len(api.deployments) + 1, **deployment}
                        api.deployments[deployment["hash"]] = record
                        self._reply(201, {"data": {"attributes": record}})
                elif method == "POST" and parts[-1] == "configurations":
                    payload = body["configuration"]["payload"]
                    if not payload.get("kits"):
                        self._reply(422, {"errors": {"kits": ["can't be blank"]}})
                    elif parts[2] in api.configurations:
                        self._reply(200, {"data": {"attributes": {"id": 1}}})
                    else:
                        api.configurations[parts[2]] = payload
                        self._reply(201, {"data": {"attributes": {"id": 1}}})
                else:
                    self._reply(404, None)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        self._serving.enter_context(serving(server))
        return self

    def stop(self) -> None:
        self._serving.close()


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
