"""Bootstrap: config + identity -> the rendered ``.apk/<org>/<name>/`` tree."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pakman import config as config_module
from pakman import render
from pakman.config import Config
from pakman.errors import ConfigError
from pakman.identity import Identity, git_facts


@dataclass(frozen=True)
class Plan:
    """What bootstrap will write, computed without touching the disk."""

    config: Config
    identity: Identity
    files: dict[str, render.RenderedFile]


def plan(
    cfg: Config,
    repository: str,
    version: str,
    build: int = 0,
    epoch: int | None = None,
    commit: str = "",
    layout: render.Layout = render.DEFAULT_LAYOUT,
) -> Plan:
    """Resolve the identity and render every file (pure: the CLI and Dagger both use it)."""
    identity = Identity(repository, version, build, epoch, commit)
    return Plan(cfg, identity, render.render(cfg, identity, layout))


def layout(workspace: Path, output: Path) -> render.Layout:
    """Where build files written to ``output`` find the workspace; refused (exit 2) when
    abuild's snapshot could not take the application, and only it, from there."""
    real_workspace, real_output = Path(os.path.realpath(workspace)), Path(os.path.realpath(output))
    try:
        inside = real_output.relative_to(real_workspace)
    except ValueError:
        raise ConfigError(
            f"--output: must be a folder inside the workspace {str(workspace)!r}, or abuild's"
            f" snapshot would pack the folders above it (got {str(output)!r})"
        ) from None
    if not inside.parts:
        raise ConfigError(
            f"--output: must be a folder inside the workspace, not the workspace itself"
            f" (got {str(output)!r})"
        )
    if {".git", ".abuild"} & set(inside.parts):
        raise ConfigError(f"--output: must not be inside .git or .abuild (got {str(output)!r})")
    root = "/".join([".."] * len(inside.parts))
    return render.Layout(root, "" if inside.parts[0] == ".apk" else inside.as_posix())


def check_workspace(cfg: Config, identity: Identity, has_file: Callable[[str], bool]) -> None:
    """Refuse now what abuild would fail on much later: files the config takes from the
    application's root that are not there."""
    if (
        cfg.type == "static"
        and cfg.package is None
        and "nginx.conf" not in cfg.build.command  # the build may write it
        and not has_file("nginx.conf")
    ):
        raise ConfigError(
            "nginx.conf: not found in the application's root: a type: static package"
            f" installs it as /etc/{identity.slug}/default.conf"
        )


def plan_workspace(
    config_path: Path,
    workspace: Path,
    repository: str,
    version: str | None = None,
    build: int = 0,
    output: Path | None = None,
) -> Plan:
    """Load the config from disk; take the version and epoch from the checkout's git;
    check the workspace; render for ``output`` (default ``.apk/<org>/<name>/``)."""
    cfg = config_module.load(config_path)
    found = layout(workspace, output) if output is not None else render.DEFAULT_LAYOUT
    facts = git_facts(workspace)
    made = plan(cfg, repository, version or facts.version, build, facts.epoch, facts.commit, found)
    check_workspace(cfg, made.identity, lambda name: (workspace / name).is_file())
    return made


SUDO = ("sudo", "-n")  # never prompts: a password it would need is a refusal


def _can_write(folder: Path) -> bool:
    """Whether this user can write ``folder``, or make it in its nearest existing parent."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def _sudo_install(target: Path, data: bytes, sudo: Sequence[str]) -> None:
    """Install the public key ``target`` as root (0644), as v8's ``sudo cp`` did: through
    a temporary file beside it, renamed over it."""
    script = (
        'mkdir -p "$1" && t=$(mktemp "$1/.pakman.XXXXXX") && cat > "$t"'
        ' && chmod 644 "$t" && mv -f "$t" "$2"'
    )
    command = [*sudo, "sh", "-c", script, "sh", str(target.parent), str(target)]
    try:
        done = subprocess.run(command, input=data, capture_output=True, check=False)
    except OSError as error:
        reason = f"{sudo[0]} is not installed" if error.errno == errno.ENOENT else str(error)
    else:
        if done.returncode == 0:
            return
        said = done.stderr.decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else f"exit {done.returncode}"
    raise ConfigError(
        f"{target}: cannot write: permission denied, and sudo cannot either ({reason}):"
        " run as root, allow this user passwordless sudo, or pass --apk-keys-dir"
    )


def write(
    files: dict[Path, tuple[bytes, int]],
    trusted_key: Path | None = None,
    sudo: Sequence[str] = SUDO,
) -> bool:
    """Write every file as this user; the public key ``trusted_key`` (in /etc/apk/keys)
    through ``sudo`` when this user cannot write its folder, as v8 did. True when sudo
    installed it.

    The key goes first: a refusal leaves nothing written. The user's own files (build files,
    ~/.abuild) are then written all or none (:func:`pakman.files.write_all`), as the user.
    """
    from pakman.files import write_all

    if trusted_key is None or trusted_key not in files or _can_write(trusted_key.parent):
        write_all(files)
        return False
    own = dict(files)
    data, _ = own.pop(trusted_key)
    _sudo_install(trusted_key, data, sudo)
    write_all(own)
    return True
