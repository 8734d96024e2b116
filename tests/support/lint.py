"""Linters the tests run on what we ship."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import rig
from tests.support.paths import ROOT


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = rig.need_tool("actionlint")
    return subprocess.run([binary, *map(str, paths)], capture_output=True, text=True, cwd=ROOT)
