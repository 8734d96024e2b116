"""The Alpine rig (:mod:`devkit.alpine`) for tests: a missing tool skips the test, except
under ``CI=true`` where it fails the run (tests/conftest.py applies the same rule to
:class:`devkit.tools.Missing` raised inside the rig)."""

from __future__ import annotations

import os

import pytest

from devkit import tools
from devkit.alpine import CACHE, Overlay, booted, build_root, overlay, run_killing_group

__all__ = [
    "CACHE",
    "Overlay",
    "booted",
    "build_root",
    "find_tool",
    "need",
    "need_root",
    "need_tool",
    "overlay",
    "run_killing_group",
]

find_tool = tools.find_tool


def need(condition: bool, reason: str) -> None:
    """Skip when a real tool is missing; under CI=true that is a failure instead."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required tool missing under CI=true: {reason}")
    pytest.skip(reason, allow_module_level=True)


def need_tool(name: str) -> str:
    path = tools.find_tool(name)
    need(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def need_root() -> None:
    try:
        tools.need_root()
    except tools.Missing as missing:
        need(False, str(missing))
