"""Merge per-arch build outputs into one packages tree and one deterministic zip.

Inputs may be abuild's ``~/packages`` (``<repo>/<arch>/<file>``) or GitHub's
downloaded artifacts (``<artifact>/<repo>/<arch>/<file>``). The deployment
agent keeps only the last two path parts of each zip entry, so every entry is
``<repo>/<arch>/<file>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pakman import tree
from pakman.errors import ConfigError
from pakman.files import atomic_writer

# 1980-01-01, the earliest zip timestamp: the same input gives the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Already compressed: deflating again costs time and saves nothing.
STORED_SUFFIXES = (".apk", ".gz", ".zip", ".xz", ".zst")


@dataclass(frozen=True)
class Merged:
    """The merged tree: archive path (``<repo>/<arch>/<file>``) -> source file."""

    entries: dict[str, Path]

    @property
    def architectures(self) -> list[str]:
        return sorted({name.split("/")[1] for name in self.entries})


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def collect(inputs: list[Path]) -> Merged:
    """Map every input file to its archive path; refuse what publish would refuse.

    Files are keyed by ``<arch>/<file>``, as the deployment agent keeps them: the same
    file from two artifacts is merged once, two different ones are a conflict.
    """
    entries: dict[str, Path] = {}
    names: dict[str, str] = {}  # <arch>/<file> -> its archive path
    problems: list[str] = []
    for top in inputs:
        try:
            found = tree.packages_tree(top, depths=(3, 4))
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        for key, source in found.items():
            repo, _, _ = tree.layout(top, source, depths=(3, 4))
            name = names.setdefault(key, f"{repo}/{key}")
            previous = entries.get(name)
            if previous is None:
                entries[name] = source
            elif previous.stat().st_size != source.stat().st_size or _sha256(previous) != _sha256(
                source
            ):
                problems.append(f"{name}: conflict: {previous} and {source} differ")
    if problems:
        raise ConfigError(*problems)
    return Merged(dict(sorted(entries.items())))


def write_tree(merged: Merged, destination: Path) -> None:
    """Copy the merged files to ``destination/<repo>/<arch>/<file>``."""
    for name, source in merged.entries.items():
        target = destination / name
        if target.exists() and target.samefile(source):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def write_zip(merged: Merged, output: Path) -> str:
    """Write a deterministic zip atomically; return its SHA-256."""
    with atomic_writer(output) as handle, zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
        for name, source in merged.entries.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = 0o100644 << 16
            stored = name.endswith(STORED_SUFFIXES)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            size = source.stat().st_size
            info.file_size = size
            with (
                source.open("rb") as reader,
                archive.open(info, "w", force_zip64=size > zipfile.ZIP64_LIMIT) as writer,
            ):
                shutil.copyfileobj(reader, writer, 1 << 20)
    return _sha256(output)


def consumer_view(archive: Path) -> list[str]:
    """Where the deployment agent puts each entry: its last two path parts."""
    with zipfile.ZipFile(archive) as zipped:
        names = [info.filename for info in zipped.infolist() if not info.is_dir()]
    return ["/".join(name.split("/")[-2:]) for name in names]


ARCHIVE_NAME = "packages.zip"
# Folders a run is writing into that must go even when the run is cut short by its
# watchdog (which ends the process at once): a made archive is as big as the packages.
SCRATCH: set[str] = set()


@contextlib.contextmanager
def archive_for(
    snapshot: tree.Snapshot, archive: Path | None, log: Callable[[str], None] = lambda _: None
) -> Iterator[Path]:
    """The archive to ship: the one given, else a deterministic zip of the snapshot's
    files, made afresh in a temporary folder (removed afterwards, also on SIGTERM). Either
    way publish checks it against the verified bytes before anything is uploaded."""
    if archive is not None:
        yield archive
        return
    with tempfile.TemporaryDirectory(prefix="pakman-archive-") as tmp:
        SCRATCH.add(tmp)
        try:
            made = Path(tmp) / ARCHIVE_NAME
            digest = write_zip(Merged(snapshot.entries()), made)
            log(f"no archive given: made {ARCHIVE_NAME} from the packages tree (sha256 {digest})")
            yield made
        finally:
            SCRATCH.discard(tmp)
