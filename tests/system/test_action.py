"""PAKman's GitHub Action: its metadata against GitHub's schema, the workflows that use it
through actionlint, and its own shell steps (action/*.sh) run for real where they can."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import rig, runner
from tests.support.paths import ROOT

# --- action/prepare.sh, as the runner runs it (before the chroot) ------------------------


def prepare(
    tmp_path: Path, alpine: str, arch: str = "X64", source: Path = ROOT
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output = tmp_path / "github-output"
    output.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "ALPINE": alpine,
        "RUNNER_ARCH": arch,
        "ACTION_PATH": str(source),
        "GITHUB_OUTPUT": str(output),
    }
    done = subprocess.run(
        [str(ROOT / "action" / "prepare.sh")], capture_output=True, text=True, env=env
    )
    pairs = (line.split("=", 1) for line in output.read_text().splitlines())
    return done, dict(pairs)


@pytest.mark.parametrize(
    ("given", "branch"),
    [("3.20", "v3.20"), ("v3.18", "v3.18"), ("edge", "edge"), ("latest-stable", "latest-stable")],
)
def test_prepare_normalises_the_alpine_version_as_v8_did(
    tmp_path: Path, given: str, branch: str
) -> None:
    done, outputs = prepare(tmp_path, given)
    assert done.returncode == 0, done.stderr
    from pakman import __version__

    assert outputs["branch"] == branch
    assert outputs["arch"] == "x86_64"
    assert outputs["version"] == __version__
    assert outputs["cache-key"].startswith(f"pakman-{__version__}-")
    assert outputs["cache-key"].endswith(f"-alpine-{branch}-x86_64")
    assert outputs["apk-tools-url"].endswith(
        "/x86_64/apk.static#!sha256!34bb1a96f0258982377a289392d4ea9f3f4b767a4bb5806b1b87179b79ad8a1c"
    )
    # The folders the chroot mounts, as v8's action made them.
    assert all((tmp_path / "home" / d).is_dir() for d in ("packages", "artifacts", ".pakman"))


@pytest.mark.parametrize("given", ["3", "v3", "3.20.1", "stable", "3.x", "v3.20;rm", ""])
def test_prepare_refuses_what_is_not_an_alpine_version(tmp_path: Path, given: str) -> None:
    done, outputs = prepare(tmp_path, given)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: alpine: must be edge, latest-stable, v3.x or 3.x (got '{given}')"
    ]
    assert outputs == {}


def test_prepare_picks_the_runners_own_arch(tmp_path: Path) -> None:
    done, outputs = prepare(tmp_path, "3.20", "ARM64")
    assert done.returncode == 0, done.stderr
    assert outputs["arch"] == "aarch64"
    assert "/aarch64/apk.static#!sha256!" in outputs["apk-tools-url"]
    assert outputs["cache-key"].endswith("-alpine-v3.20-aarch64")
    done, _ = prepare(tmp_path, "3.20", "X86")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: runner.arch: PAKman's action runs on X64 and ARM64 runners (got 'X86')"
    )


def test_the_cache_key_follows_the_sources(tmp_path: Path) -> None:
    """A branch such as @main changes under one version: its cache must not be reused."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "pakman", source / "pakman", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", source)
    _, before = prepare(tmp_path, "3.20", source=source)
    _, again = prepare(tmp_path, "3.20", source=source)
    (source / "pakman" / "cli" / "__init__.py").write_text("# changed\n", encoding="utf-8")
    _, after = prepare(tmp_path, "3.20", source=source)
    assert before["cache-key"] == again["cache-key"] != after["cache-key"]
    assert after["cache-key"].startswith(f"pakman-{before['version']}-")


# --- action/install.sh, in the Alpine chroot as the runner user --------------------------


@pytest.mark.alpine
def test_install_puts_the_cached_pakman_on_path_for_the_runner_user(
    alpine: rig.Overlay,
) -> None:
    """With the cache restored (here: this checkout's own environment), install.sh puts the
    runner user in the abuild group (abuild -r needs it) and pakman on every step's PATH.
    (Installing from scratch downloads from PyPI: the action workflow runs that on GitHub.)"""
    runner.prepare(alpine)
    alpine.bind(ROOT / "action", "/action", readonly=True)
    env = {"PAKMAN_SOURCE": "/", "PAKMAN_VENV": sys.prefix}
    alpine.run("rm /usr/local/bin/pakman")  # the rig's own, so only install.sh's counts
    done = runner.as_user(alpine, "runner", "/action/install.sh", env)
    from pakman import __version__

    assert done.stdout.strip() == f"pakman {__version__}"
    linked = alpine.run("readlink /usr/local/bin/pakman; id -nG runner").stdout.split("\n")
    assert linked[0] == f"{sys.prefix}/bin/pakman"
    assert "abuild" in linked[1].split()
    again = runner.as_user(alpine, "runner", "/action/install.sh", env)  # a second use
    assert again.stdout.strip() == f"pakman {__version__}"
    # A later step, a new login as alpine.sh makes, finds it on PATH.
    later = runner.as_user(alpine, "runner", "command -v pakman && pakman --version")
    assert later.stdout.splitlines() == ["/usr/local/bin/pakman", f"pakman {__version__}"]


# --- installable for real ----------------------------------------------------------------
