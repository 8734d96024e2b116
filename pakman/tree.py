"""The packages tree that verify, merge and publish all read, with the same refusals.

A tree holds plain ``.apk`` files and ``APKINDEX.tar.gz`` indexes at ``<repo>/<arch>/``
(merge also takes GitHub's ``<artifact>/<repo>/<arch>/``). Anything else is refused, naming
the path: a symbolic link (it could point outside the tree, at /dev/zero or at a secret),
a FIFO or device (reading it hangs or never ends), a stray file (.DS_Store), a folder
deeper than a layout allows. Refusing is exit 2: the tree is bad input.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pakman.errors import ConfigError

# Alpine's architectures, as instellar.yml names them and as packages trees are laid out.
ARCHITECTURES = (
    "x86_64",
    "aarch64",
    "armv7",
    "armhf",
    "x86",
    "ppc64le",
    "s390x",
    "riscv64",
    "loongarch64",
    "noarch",
    "all",
)
INDEX_NAME = "APKINDEX.tar.gz"
TREE_LAYOUT = "<repo>/<arch>/<file>"
ARTIFACT_LAYOUT = "<artifact>/<repo>/<arch>/<file>"
MAX_DEPTH = 4  # the artifact layout's depth


def is_package_file(name: str) -> bool:
    return name == INDEX_NAME or (name.endswith(".apk") and name != ".apk")


def files(top: Path, depths: tuple[int, ...] = (3, 4)) -> list[Path]:
    """Every package file under ``top``, sorted, each at a layout of ``depths`` with a
    known ``<arch>``; the whole tree is refused on any stray, as merge and publish refuse it."""
    found, problems = _scan(top)
    for path in found:
        try:
            layout(top, path, depths)
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(*sorted(problems))
    return found


def shown(path: Path | str) -> str:
    """A path as it can be printed: bytes that are not UTF-8 as ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _scan(top: Path) -> tuple[list[Path], list[str]]:
    try:
        if not stat.S_ISDIR(top.stat().st_mode):
            raise ConfigError(f"{shown(top)}: not a directory")
    except OSError:
        raise ConfigError(f"{shown(top)}: no such directory") from None
    found: list[Path] = []
    problems: list[str] = []
    pending = [(top, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as error:
            problems.append(f"{folder}: cannot read: {error.strerror}")
            continue
        for entry in entries:
            path = Path(entry.path)
            if not _utf8(entry.name):
                # Archives, manifests and keys are UTF-8: such a name could not be shipped.
                problems.append(f"{shown(path)}: the name is not valid UTF-8")
            elif entry.is_symlink():
                problems.append(f"{path}: a symbolic link (a packages tree holds plain files)")
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 >= MAX_DEPTH:
                    problems.append(f"{path}: too deep for {TREE_LAYOUT} or {ARTIFACT_LAYOUT}")
                else:
                    pending.append((path, depth + 1))
            elif not entry.is_file(follow_symlinks=False):
                problems.append(f"{path}: not a regular file (a FIFO, socket or device)")
            elif not is_package_file(entry.name):
                problems.append(f"{path}: not an .apk or {INDEX_NAME}")
            else:
                found.append(path)
    return sorted(found), sorted(problems)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes of undecodable bytes
        return False
    return True


def layout(top: Path, path: Path, depths: tuple[int, ...] = (3,)) -> tuple[str, str, str]:
    """``(repo, arch, file)`` of a package file, or a refusal naming the layout."""
    parts = path.relative_to(top).parts
    if len(parts) not in depths or parts[-2] not in ARCHITECTURES:
        wanted = TREE_LAYOUT if depths == (3,) else f"{TREE_LAYOUT} or {ARTIFACT_LAYOUT}"
        raise ConfigError(f"{path}: not at {wanted} with a known <arch>")
    return parts[-3], parts[-2], parts[-1]


def packages_tree(top: Path, depths: tuple[int, ...] = (3,)) -> dict[str, Path]:
    """``<arch>/<file>`` -> path: what the deployment agent keeps of each file.

    Two files at the same ``<arch>/<file>`` (from two repos) would overwrite each other
    there, so they are refused unless they are the same bytes.
    """
    found: dict[str, Path] = {}
    paths, problems = _scan(top)
    for path in paths:
        try:
            _, arch, name = layout(top, path, depths)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        key = f"{arch}/{name}"
        if key in found and not _same_bytes(found[key], path):
            problems.append(f"{key}: two different files: {found[key]} and {path}")
        found.setdefault(key, path)
    if problems:
        raise ConfigError(*sorted(problems))
    if not found:
        raise ConfigError(f"{top}: no package files ({TREE_LAYOUT})")
    return found


@dataclass(frozen=True)
class Snapshot:
    """One walk of a ``<repo>/<arch>/<file>`` tree: what verify, the archive and publish
    all take, so each file is found once and the same files are verified and shipped."""

    top: Path
    files: dict[str, Path]  # <arch>/<file> -> path

    @property
    def paths(self) -> list[Path]:
        return sorted(self.files.values())

    def entries(self) -> dict[str, Path]:
        """``<repo>/<arch>/<file>`` -> path: the archive's entries."""
        return dict(
            sorted((path.relative_to(self.top).as_posix(), path) for path in self.files.values())
        )


def snapshot(top: Path) -> Snapshot:
    """The tree at ``top``, walked once; refused as :func:`packages_tree` refuses it."""
    return Snapshot(top, dict(sorted(packages_tree(top).items())))


def _same_bytes(a: Path, b: Path) -> bool:
    import hashlib

    if a.stat().st_size != b.stat().st_size:
        return False
    digests = []
    for path in (a, b):
        with path.open("rb") as handle:
            digests.append(hashlib.file_digest(handle, "sha256").digest())
    return digests[0] == digests[1]
