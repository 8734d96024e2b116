"""Writing local files: atomically, with their final mode from creation, or not at all.

Every file pakman writes (rendered build files, keys, abuild.conf, zips)
goes through :func:`atomic_writer`: a temporary made by ``mkstemp`` beside the target
(O_EXCL, never a fixed name another process could have planted), 0600 from creation,
fsynced, then renamed over the target. A failure names the file and leaves no partial one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from pakman.errors import ConfigError


def local_error(path: Path, error: OSError) -> ConfigError:
    """A one-line error for a local file problem: exit 2, naming the file."""
    reason = {
        errno.ENAMETOOLONG: "the name is too long",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a parent is not a directory",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
    }.get(error.errno or 0, error.strerror or error.__class__.__name__)
    return ConfigError(f"{path}: cannot write: {reason}")


def make_dirs(directory: Path) -> None:
    """``mkdir -p``, as a one-line error naming the folder."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{directory}: cannot write: exists and is not a directory") from None
    except OSError as error:
        raise local_error(directory, error) from None


def _temporary(path: Path) -> tuple[int, Path]:
    """A fresh file beside ``path`` (mkstemp: O_EXCL, 0600), open for writing."""
    make_dirs(path.parent)
    if path.is_dir():
        raise ConfigError(f"{path}: cannot write: is a directory")
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.")
    except OSError as error:
        raise local_error(path, error) from None
    return fd, Path(name)


def _settle(handle: BinaryIO, temporary: Path, mode: int) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    os.chmod(temporary, mode)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary handle whose contents replace ``path`` only when the block succeeds."""
    fd, temporary = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            _settle(handle, temporary, mode)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise local_error(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def replace_staged(staged: Sequence[tuple[Path, Path]]) -> None:
    """Rename each staged temporary over its target, in order; a failure names the target."""
    for temporary, path in staged:
        try:
            os.replace(temporary, path)
        except OSError as error:
            raise local_error(path, error) from None


def write_all(files: dict[Path, tuple[bytes, int]]) -> list[Path]:
    """Write every file or none: all are staged beside their targets, then renamed.

    A failure while staging (a full disk, an unwritable folder, a name too long) removes
    what was staged and leaves every target as it was.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, (data, mode) in sorted(files.items()):
            fd, temporary = _temporary(path)
            staged.append((temporary, path))
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    _settle(handle, temporary, mode)
            except OSError as error:
                raise local_error(path, error) from None
        replace_staged(staged)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    return [path for _, path in staged]


# Verifying, hashing and zipping a tree of gigabytes takes a while: whatever a run will
# refuse anyway (a bucket name, missing credentials, an unreadable file, an unwritable
# folder) is refused first.


def check_readable(path: Path | None, option: str) -> None:
    """A file a run will read later, checked now."""
    if path is None:
        return
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(f"{option}: {path}: cannot read: {error.strerror}") from None
    if not path.is_file():
        raise ConfigError(f"{option}: {path}: not a regular file")


def check_writable(path: Path, option: str, *, folder: bool = False) -> None:
    """A file (or, with ``folder``, a folder) a run will write later: the nearest folder
    that exists must take it now (missing folders are made as it is written)."""
    if path.is_dir() and not folder:
        raise ConfigError(f"{option}: {path}: cannot write: is a directory")
    existing = path.absolute() if folder else path.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: {existing}: not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: {existing}: cannot write here")
