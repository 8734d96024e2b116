"""Who and what is being built: repository slugs, version, build number, Alpine branch."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from pakman.errors import ConfigError

# GitHub's rules for owner and repository names.
REPOSITORY = re.compile(
    r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)/(?P<name>[A-Za-z0-9._-]{1,100})"
)
# Alpine's pkgver grammar (abuild's verify_pkgver), without the leading 'v'.
PKGVER = re.compile(
    r"[0-9]+(?:\.[0-9]+)*[a-z]?"
    r"(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*"
)
ALPINE = re.compile(r"v?(?P<major>[0-9]+)\.(?P<minor>[0-9]+)")
# A commit id as abuild records it in .PKGINFO, "-dirty" when tracked files were changed.
COMMIT = re.compile(r"[0-9a-f]{7,64}(?:-dirty)?")
# A pinned default, so a config without ``stack:`` builds the same next month.
DEFAULT_ALPINE = "v3.23"


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
        if not REPOSITORY.fullmatch(self.repository) or not self.slug:
            raise ConfigError(
                f"repository: must be owner/name as on GitHub (got {self.repository!r})"
            )
        if len(self.version) > 64 or not PKGVER.fullmatch(self.version):
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
    return first if "." in first and PKGVER.fullmatch(first) else "0.0.0"


def commit_from_git(head: str, status: str) -> str:
    """The commit abuild should record: HEAD, plus ``-dirty`` when ``status`` lists changes."""
    head = head.strip()
    if not COMMIT.fullmatch(head):
        return ""
    return f"{head}-dirty" if status.strip() not in ("", "0") else head


# Tracked changes outside the rendered build files: what makes a build "-dirty".
GIT_STATUS = ("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude).apk")


@dataclass(frozen=True)
class GitFacts:
    """What a checkout says about the build: version, commit time and commit."""

    version: str = "0.0.0"
    epoch: int | None = None
    commit: str = ""


def git_probe(path: str) -> str:
    """A POSIX shell script printing the facts :func:`read_git_probe` reads.

    The CLI runs it on the checkout, the Dagger module in a small container, so both
    derive the version, SOURCE_DATE_EPOCH and commit the same way.
    """
    status = " ".join(shlex.quote(arg) for arg in GIT_STATUS)
    # safe.directory on the command line: a checkout owned by another user (a container's
    # mount, a CI runner's volume) is still read, and no user config is changed.
    return (
        f"g() {{ git -c safe.directory='*' -C {shlex.quote(path)} \"$@\" 2>/dev/null; }}\n"
        'echo "describe=$(g describe --tags --always)"\n'
        'echo "epoch=$(g log -1 --format=%ct)"\n'
        'echo "head=$(g rev-parse HEAD)"\n'
        f'echo "changes=$(g {status} | wc -l)"\n'
    )


def read_git_probe(out: str) -> GitFacts:
    """Parse what :func:`git_probe` printed."""
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    epoch = found.get("epoch", "").strip()
    return GitFacts(
        version=version_from_describe(found.get("describe", "")),
        epoch=int(epoch) if epoch.isascii() and epoch.isdigit() else None,
        commit=commit_from_git(found.get("head", ""), found.get("changes", "")),
    )


def git_facts(workspace: Path) -> GitFacts:
    """The facts of the checkout at ``workspace`` (defaults without git or a repository)."""
    import subprocess  # here: publish, which imports this module, runs no command

    try:
        result = subprocess.run(
            ["sh", "-c", git_probe(str(workspace))],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return GitFacts()
    return read_git_probe(result.stdout)


def alpine_branch(version: str) -> str | None:
    """Normalise ``3.20``, ``v3.20``, ``edge``, ``latest-stable``; None if not a version."""
    version = version.strip()
    if version in ("edge", "latest-stable"):
        return version
    match = ALPINE.fullmatch(version)
    return f"v{int(match['major'])}.{int(match['minor'])}" if match else None


def alpine_image_tag(branch: str) -> str:
    """The ``alpine`` image tag for a normalised branch: ``3.20``, ``edge`` or ``latest``."""
    if branch == "latest-stable":
        return "latest"
    return branch.removeprefix("v")


def resolve_alpine(
    requested: str | None, stack_version: str | None, *, option: str = "alpine"
) -> str:
    """Pick the Alpine branch: an explicit request (named ``option`` in errors), else the
    config's stack, else the default."""
    for source, value in ((option, requested), ("stack", stack_version)):
        if value:
            branch = alpine_branch(value)
            if branch is None:
                raise ConfigError(
                    f"{source}: not an Alpine version (3.20, v3.20, edge, latest-stable)"
                    f" (got {value!r})"
                )
            return branch
    return DEFAULT_ALPINE


def build_number(value: str | int | None) -> int:
    """The pkgrel: ASCII digits only (``int()`` would take '²' or ' 7')."""
    if value is None or value == "":
        return 0
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"--build: must be a whole number (got {text!r})")
    return int(text)
