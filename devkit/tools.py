"""Finding the real tools the tests and benchmarks run, and saying which one is missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Where scripts/test.sh builds the Go tools, once per machine: <tools>/<name>-<version>/.
TOOLS = Path(os.environ.get("PAKMAN_TOOLS", Path.home() / ".cache" / "pakman-tools"))


class Missing(RuntimeError):
    """A real tool (or root) that a test or benchmark needs is not there; the message
    says which."""


def need(condition: bool, reason: str) -> None:
    """Raise :class:`Missing` with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise Missing(reason)


def find_tool(name: str) -> str | None:
    """A tool on PATH, installed beside this Python (the venv's bin), or built by
    scripts/test.sh into the tools folder."""
    beside = Path(sys.executable).parent / name
    built = sorted(TOOLS.glob(f"*/{name}"))
    return (
        shutil.which(name)
        or (str(beside) if beside.exists() else None)
        or (str(built[-1]) if built else None)
    )


def need_tool(name: str) -> str:
    """The path of ``name``; :class:`Missing` if it is nowhere."""
    path = find_tool(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root for mount and chroot")
    need_tool("mount")
    need_tool("chroot")
