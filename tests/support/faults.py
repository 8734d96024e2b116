"""A fault-injecting HTTP proxy in front of a real S3 server: resets, SlowDown, delays,
stripped or forged checksums, ignored conditional writes, error bodies cut off."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field


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
