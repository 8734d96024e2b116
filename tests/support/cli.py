"""The pakman CLI run as a user runs it: a subprocess of this Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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


def run_bootstrap(
    workspace: Path,
    home: Path,
    apk_keys_dir: Path | None = None,
    private_pem: str | None = None,
    repository: str = "upmaru/locomo",
) -> subprocess.CompletedProcess[str]:
    """`pakman bootstrap` of a workspace, its key (if any) from ABUILD_PRIVATE_KEY."""
    keys_dir = ["--apk-keys-dir", str(apk_keys_dir)] if apk_keys_dir else []
    return run_pakman(
        "bootstrap",
        "--workspace",
        str(workspace),
        "--repository",
        repository,
        "--home",
        str(home),
        *keys_dir,
        env={"ABUILD_PRIVATE_KEY": private_pem} if private_pem else None,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit ``code``, no traceback, and the error as ``error:`` lines, the last line one."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines, "no error printed"
    assert lines[-1].startswith("error:"), result.stderr
    errors = "\n".join(line for line in lines if line.startswith("error:"))
    for needle in needles:
        assert needle in errors, result.stderr
