"""The unit tests are pure and fast: none starts or forks a process or opens a network
connection. A test that needs one belongs in tests/integration/ (tests/system/ for the chroot)."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import pytest

_connect = socket.socket.connect


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a unit test started a process {args[1:2]}: move it to integration")

    def no_network(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a unit test connected to {address}: move it to integration")
        _connect(self, address)

    def no_fork() -> int:
        raise AssertionError("a unit test forked a process: move it to integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(socket.socket, "connect", no_network)
