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
from collections.abc import Iterator
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


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


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
        for temporary, path in staged:
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise local_error(path, error) from None
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    return [path for _, path in staged]
