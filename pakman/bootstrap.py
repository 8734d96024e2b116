"""Bootstrap: config + identity -> the rendered ``.apk/<org>/<name>/`` tree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pakman import config as config_module
from pakman import render
from pakman.config import Config
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
) -> Plan:
    """Resolve the identity and render every file (pure: the CLI and Dagger both use it)."""
    identity = Identity(repository, version, build, epoch, commit)
    return Plan(cfg, identity, render.render(cfg, identity))


def plan_workspace(
    config_path: Path,
    workspace: Path,
    repository: str,
    version: str | None = None,
    build: int = 0,
) -> Plan:
    """Load the config from disk; take the version and epoch from the checkout's git."""
    cfg = config_module.load(config_path)
    facts = git_facts(workspace)
    return plan(cfg, repository, version or facts.version, build, facts.epoch, facts.commit)
