"""Bootstrap: config + identity -> the rendered ``.apk/<org>/<name>/`` tree."""

from __future__ import annotations

import os
from collections.abc import Callable
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
