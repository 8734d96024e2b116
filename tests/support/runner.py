"""A GitHub runner's Alpine chroot, as setup-alpine makes it, for tests: an unprivileged
``runner`` user with passwordless sudo (and ``nosudo``, without), and this checkout's
pakman on PATH, run by this very Python (glibc, bound in with its libraries)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.support import rig
from tests.support.paths import ROOT

RUNNER_UID = 1001
NOSUDO_UID = 1002

# What this Python needs inside a musl root: its prefix, the venv, the checkout, and glibc's
# loader and libraries (ld.so searches both of Debian's multiarch folders by default).
_LIBS = Path("/usr/lib/x86_64-linux-gnu")


def prepare(root: rig.Overlay) -> None:
    """Bind this Python and checkout in; add the users as setup-alpine adds its one."""
    rig.need(_LIBS.is_dir(), "this Python's glibc libraries are not in /usr/lib/x86_64-linux-gnu")
    for path in sorted({Path(sys.base_prefix), Path(sys.prefix), ROOT}):
        root.bind(path, str(path), readonly=True)
    root.bind(_LIBS, str(_LIBS), readonly=True)
    root.bind(_LIBS, "/lib/x86_64-linux-gnu", readonly=True)
    root.bind(Path("/lib64").resolve(), "/lib64", readonly=True)
    # Host tools the Alpine root lacks (v8's setup installed zip): glibc builds, run from
    # their own folder, bound in.
    root.bind(Path("/usr/bin"), "/host/usr/bin", readonly=True)
    for tool in ("zip", "unzip"):
        rig.need_tool(tool)
        root.put(f"/usr/local/bin/{tool}", f'#!/bin/sh\nexec /host/usr/bin/{tool} "$@"\n', 0o755)
    root.put(
        "/usr/local/bin/pakman", f'#!/bin/sh\nexec "{sys.executable}" -m pakman.cli "$@"\n', 0o755
    )
    root.run(
        # The paths of this Python must be reachable by the users (only /root is not).
        "chmod 755 /root"
        f" && adduser -D -u {RUNNER_UID} -G users -s /bin/sh runner"
        f" && adduser -D -u {NOSUDO_UID} -G users -s /bin/sh nosudo"
        " && echo 'runner ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/runner"
        " && chmod 440 /etc/sudoers.d/runner"
    )


def as_user(
    root: rig.Overlay,
    user: str,
    script: str,
    env: dict[str, str] | None = None,
    *,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as ``user`` the way setup-alpine's ``alpine.sh`` does: ``su`` to the
    user, the step's environment sourced from a file, ``sh -e``."""
    step_env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", **(env or {})}
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in step_env.items())
    root.put("/tmp/.env.sh", exports, 0o644)
    root.put("/tmp/.step.sh", script, 0o755)
    return root.run(f"su {user} -c '. /tmp/.env.sh; exec /bin/sh -e /tmp/.step.sh'", check=check)
