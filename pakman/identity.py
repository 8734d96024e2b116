"""Who and what is being built: repository slugs, version, build number, Alpine branch."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pakman.errors import ConfigError

# GitHub's rules for owner and repository names.
REPOSITORY = re.compile(
    r"^(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)/(?P<name>[A-Za-z0-9._-]+)$"
)
# Alpine's pkgver grammar (abuild's verify_pkgver), without the leading 'v'.
PKGVER = re.compile(
    r"^[0-9]+(?:\.[0-9]+)*[a-z]?"
    r"(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*$"
)
ALPINE = re.compile(r"^v?(?P<major>[0-9]+)\.(?P<minor>[0-9]+)$")
# A commit id as abuild records it in .PKGINFO, "-dirty" when tracked files were changed.
COMMIT = re.compile(r"[0-9a-f]{7,64}(?:-dirty)?")
DEFAULT_ALPINE = "latest-stable"


def slugify(text: str) -> str:
    """Lowercase, with every run of other characters turned into one '-' (v8's slug)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class Identity:
    """The package's identity, derived from ``owner/name`` and git."""

    repository: str
    version: str = "0.0.0"
    build: int = 0
    source_date_epoch: int | None = None
    commit: str = ""  # the source's git commit; empty when unknown

    def __post_init__(self) -> None:
        if not REPOSITORY.match(self.repository):
            raise ConfigError(
                f"repository: must be owner/name as on GitHub (got {self.repository!r})"
            )
        if not PKGVER.match(self.version):
            raise ConfigError(f"version: not a valid Alpine pkgver (got {self.version!r})")
        if self.build < 0:
            raise ConfigError(f"build: must be a whole number >= 0 (got {self.build})")
        if self.commit and not COMMIT.fullmatch(self.commit):
            raise ConfigError(f"commit: not a git commit id (got {self.commit!r})")

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The repository name as is; it names the ``.apk/<org>/<name>`` folder."""
        return self.repository.split("/", 1)[1]

    @property
    def organization(self) -> str:
        return slugify(self.owner)

    @property
    def slug(self) -> str:
        """The package name."""
        return slugify(self.name)

    @property
    def key_name(self) -> str:
        """Base name of the signing key files: ``<org>-<slug>.rsa``."""
        return f"{self.organization}-{self.slug}.rsa"

    @property
    def apk_dir(self) -> str:
        """Where the build files go, relative to the workspace."""
        return f".apk/{self.organization}/{self.name}"


def version_from_describe(described: str) -> str:
    """Turn ``git describe --tags --always`` output into a pkgver.

    The first '-' field, without a leading 'v'. It must be a valid Alpine pkgver
    with at least one dot, so a bare commit hash (even an all-digit one) gives 0.0.0.
    """
    first = described.strip().split("-", 1)[0]
    if first[:1] in ("v", "V"):
        first = first[1:]
    return first if "." in first and PKGVER.match(first) else "0.0.0"


def _git(workspace: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(workspace), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_version(workspace: Path) -> str:
    """The pkgver for the checkout at ``workspace`` (0.0.0 without git or tags)."""
    return version_from_describe(_git(workspace, "describe", "--tags", "--always") or "")


def git_epoch(workspace: Path) -> int | None:
    """The commit time of HEAD, for SOURCE_DATE_EPOCH."""
    out = _git(workspace, "log", "-1", "--format=%ct")
    return int(out) if out and out.isdigit() else None


def commit_from_git(head: str, status: str) -> str:
    """The commit abuild should record: HEAD, plus ``-dirty`` when ``status`` lists changes."""
    head = head.strip()
    if not COMMIT.fullmatch(head):
        return ""
    return f"{head}-dirty" if status.strip() else head


# Tracked changes outside the rendered build files: what makes a build "-dirty".
GIT_STATUS = ("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude).apk")


def git_commit(workspace: Path) -> str:
    """HEAD of the checkout, ``-dirty`` if tracked files changed; empty without git."""
    head = _git(workspace, "rev-parse", "HEAD")
    status = _git(workspace, *GIT_STATUS)
    return commit_from_git(head or "", status or "") if status is not None else ""


def alpine_branch(version: str) -> str | None:
    """Normalise ``3.20``, ``v3.20``, ``edge``, ``latest-stable``; None if not a version."""
    version = version.strip()
    if version in ("edge", "latest-stable"):
        return version
    match = ALPINE.match(version)
    return f"v{int(match['major'])}.{int(match['minor'])}" if match else None


def alpine_image_tag(branch: str) -> str:
    """The ``alpine`` image tag for a normalised branch: ``3.20``, ``edge`` or ``latest``."""
    if branch == "latest-stable":
        return "latest"
    return branch.removeprefix("v")


def resolve_alpine(requested: str | None, stack_version: str | None) -> str:
    """Pick the Alpine branch: an explicit request, else the config's stack, else latest-stable."""
    for source, value in (("alpine", requested), ("stack", stack_version)):
        if value:
            branch = alpine_branch(value)
            if branch is None:
                raise ConfigError(
                    f"{source}: not an Alpine version (3.20, v3.20, edge, latest-stable)"
                    f" (got {value!r})"
                )
            return branch
    return DEFAULT_ALPINE
