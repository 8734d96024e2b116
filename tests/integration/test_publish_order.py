"""What a publish does before its packages are verified: nothing that could wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.deployment import Built
from tests.support.instellar import SHA

# The CLI, then whether this process (not the child reading storage beside verification)
# imported botocore.
CLI = """
import sys
from pakman.cli import main
status = main(sys.argv[1:])
print("botocore imported:", "botocore" in sys.modules, file=sys.stderr)
sys.exit(status)
"""


def _publish(built: Built, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "publish",
            str(built.packages),
            "--archive",
            str(built.archive),
            "--key",
            str(built.public_key),
            "--repository",
            "acme/app",
            "--sha",
            SHA,
            "--bucket",
            "releases",
            "--endpoint",
            "http://127.0.0.1:9",
            "--timeout",
            "5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_credentials_in_the_environment_leave_botocore_to_the_requests(
    deployment_files: Built, tmp_path: Path
) -> None:
    """botocore's import (half a second of CPU) happens beside verification, in the
    process reading storage: a run whose verification fails never imports it, however
    its credentials are given in the environment."""
    package = next((deployment_files.packages / "acme" / "x86_64").glob("*.apk"))
    data = bytearray(package.read_bytes())
    data[-30] ^= 0xFF
    package.write_bytes(bytes(data))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE00",
        "AWS_SECRET_ACCESS_KEY": "example-secret-example-secret",
    }
    refused = _publish(deployment_files, env)
    assert refused.returncode != 0
    assert "verification failed" in refused.stderr, refused.stderr
    assert "botocore imported: False" in refused.stderr, refused.stderr[-600:]


def test_without_credentials_the_run_is_still_refused_before_verification(
    deployment_files: Built, tmp_path: Path
) -> None:
    """No credentials anywhere: botocore's own search says so first."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    refused = _publish(deployment_files, env)
    assert refused.returncode == 2
    assert "no credentials" in refused.stderr, refused.stderr
