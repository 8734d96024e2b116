"""Shared fixtures: the v8 config corpus, a CLI runner and the real-tool rig."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The Dagger SDK reads this at import time; set it before anything imports dagger.
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Pakman")

from tests import rig

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
V8_CONFIGS = FIXTURES / "v8"
# The repository each v8 fixture belongs to: its run.name is the package name.
V8_REPOSITORIES = {
    "astro": "artellectual/artellectual.com",
    "caddy": "upmaru/uplink-caddy",
    "elixir": "upmaru/rdio",
    "laravel": "upmaru/laraone",
    "next": "upmaru/nimbus",
    "rails": "upmaru/locomo",
}


def run_pakman(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ABUILD_"))}
    return subprocess.run(
        [sys.executable, "-m", "pakman.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def alpine_root() -> Path:
    """The clean Alpine 3.23 root, built once and cached between runs."""
    return rig.build_root()


@pytest.fixture
def alpine(alpine_root: Path) -> Iterator[rig.Overlay]:
    """A fresh writable overlay over the Alpine root, for one test."""
    with rig.overlay(alpine_root) as root:
        yield root
