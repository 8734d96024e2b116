"""Where the deployment agent puts an archive entry: by its last two path parts.

v8's agent (Uplink) extracts the zip and moves each file to ``<arch>/<file>``, its last two
path parts, whatever folders come before. So both ``<repo>/<arch>/<file>`` (what ``pakman
merge`` writes) and v8's own ``sudo zip -r /home/runner/packages.zip "$HOME"/packages``
(``home/runner/packages/<repo>/<arch>/<file>``) are valid archives.
"""

from __future__ import annotations

from pathlib import Path

from pakman.tree import is_package_file

ARCHIVE_LAYOUT = "[<folders>/]<repo>/<arch>/<file>"


def _safe(parts: list[str]) -> bool:
    return all(part not in ("", ".", "..") and "\\" not in part for part in parts)


def placement(name: str) -> str | None:
    """``<arch>/<file>`` for a file entry ``[<folders>/]<repo>/<arch>/<file>``; None for any
    other name (absolute, ``..``, a backslash, too shallow, not a package file)."""
    parts = name.split("/")
    if len(parts) < 3 or not _safe(parts) or not is_package_file(parts[-1]):
        return None
    return "/".join(parts[-2:])


def is_folder_entry(name: str) -> bool:
    """A folder entry (``a/b/``) of safe relative parts, which extracts to nothing else."""
    return name.endswith("/") and _safe(name[:-1].split("/"))


def v8_archive(given: str, home: Path) -> Path | None:
    """Where v8's push found the archive: as given, else in $HOME; None when in neither."""
    path = Path(given)
    if path.exists():
        return path
    if not path.is_absolute() and (home / path).exists():
        return home / path
    return None
