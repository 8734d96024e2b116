"""A fake OpsMaru/Instellar API over real HTTP on 127.0.0.1, and the tokens the tests give it."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.http import serving

SHA = "fedcba9876543210fedcba9876543210fedcba98"
AUTH = "instellar-auth-token-SECRET-1"
PACKAGE_TOKEN = "instellar-package-token-SECRET-2"


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
