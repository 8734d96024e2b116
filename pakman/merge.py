"""Merge per-arch build outputs into one packages tree and one deterministic zip.

Inputs may be abuild's ``~/packages`` (``<repo>/<arch>/<file>``) or GitHub's
downloaded artifacts (``<artifact>/<repo>/<arch>/<file>``). The deployment
agent keeps only the last two path parts of each zip entry, so every entry is
``<repo>/<arch>/<file>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pakman.config import ARCHITECTURES
from pakman.errors import ConfigError

# 1980-01-01, the earliest zip timestamp: the same input gives the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Already compressed: deflating again costs time and saves nothing.
STORED_SUFFIXES = (".apk", ".gz", ".zip", ".xz", ".zst")
LAYOUTS = "<repo>/<arch>/<file> or <artifact>/<repo>/<arch>/<file>"


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


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b)


def collect(inputs: list[Path]) -> Merged:
    """Map every input file to its archive path; reject odd layouts and real conflicts."""
    entries: dict[str, Path] = {}
    problems = []
    for top in inputs:
        if not top.is_dir():
            raise ConfigError(f"{top}: no such directory")
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                source = Path(dirpath) / filename
                parts = source.relative_to(top).parts
                if len(parts) not in (3, 4) or parts[-2] not in ARCHITECTURES:
                    problems.append(f"{source}: not in a known layout ({LAYOUTS})")
                    continue
                name = "/".join(parts[-3:])
                previous = entries.get(name)
                if previous is None:
                    entries[name] = source
                elif not _same_bytes(previous, source):
                    problems.append(f"{name}: conflict: {previous} and {source} differ")
    if problems:
        raise ConfigError(*problems)
    if not entries:
        raise ConfigError(f"no packages found in {', '.join(map(str, inputs))} ({LAYOUTS})")
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
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    with zipfile.ZipFile(temporary, "w", allowZip64=True) as archive:
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
    temporary.replace(output)
    return _sha256(output)


def consumer_view(archive: Path) -> list[str]:
    """Where the deployment agent puts each entry: its last two path parts."""
    with zipfile.ZipFile(archive) as zipped:
        names = [info.filename for info in zipped.infolist() if not info.is_dir()]
    return ["/".join(name.split("/")[-2:]) for name in names]
