"""Application workspaces as users have them: real git repositories holding a v8 config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.paths import V8_CONFIGS


def git_workspace(path: Path, config: str | None = "rails", tag: str | None = None) -> Path:
    """A real git repository holding a v8 fixture as instellar.yml, with one commit."""
    path.mkdir(parents=True, exist_ok=True)
    if config:
        (path / "instellar.yml").write_text((V8_CONFIGS / f"{config}.yml").read_text())
    else:
        (path / "README").write_text("x")
    date = "2024-01-02T03:04:05+00:00"
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    identity = ["-c", "user.name=pakman", "-c", "user.email=tests@pakman.invalid"]
    for args in (["init", "-q"], ["add", "."], [*identity, "commit", "-qm", "init"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    if tag:
        subprocess.run(["git", "-C", str(path), "tag", tag], check=True)
    return path
