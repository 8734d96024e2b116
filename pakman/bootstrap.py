"""Bootstrap: config + identity -> the rendered ``.apk/<org>/<name>/`` tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pakman import config as config_module
from pakman import render
from pakman.config import Config
from pakman.identity import Identity, git_epoch, git_version


@dataclass(frozen=True)
class Plan:
    """What bootstrap will write, computed without touching the disk."""

    config: Config
    identity: Identity
    files: dict[str, render.RenderedFile]


def plan(
    config_path: Path,
    workspace: Path,
    repository: str,
    version: str | None = None,
    build: int = 0,
) -> Plan:
    """Load and validate the config, resolve the identity and render every file."""
    cfg = config_module.load(config_path)
    identity = Identity(
        repository=repository,
        version=version or git_version(workspace),
        build=build,
        source_date_epoch=git_epoch(workspace),
    )
    return Plan(cfg, identity, render.render(cfg, identity))
