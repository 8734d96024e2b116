"""The archive shipped when none is given: a deterministic zip of the packages tree.

It is kept beside the hash cache, as ``~/.cache/pakman/made/<digest>/packages.zip`` with a
digest of the tree's file identities, and used again while the tree is unchanged, so a
retried publish neither zips nor reads the tree again. A run holds a shared lock on the
zip it ships; a zip of another tree is removed once it is a minute old and nobody holds
it, so the cache keeps about one archive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pakman.errors import ConfigError
from pakman.hashcache import HashCache, fact
from pakman.pipeline import ARCHIVE_NAME as NAME
from pakman.tree import files

KEEP_SECONDS = 60  # a zip of another tree younger than this may be about to be locked


@contextlib.contextmanager
def made(tree: Path, cache: HashCache | None, log: Callable[[str], None]) -> Iterator[Path]:
    """A deterministic zip of ``tree``: the kept one while the tree is unchanged, else new.

    The zip holds the tree by construction, and the cache is told so: publish does not
    read it back member by member. Without a cache (or where its folder cannot be
    written) the zip is a temporary, removed afterwards.
    """
    tree_files = files(tree)
    if cache is not None and cache.path is not None:
        folder = cache.path.parent / "made"
        # Named packages.zip, as its object key ends, in a folder named by the tree.
        kept = folder / fact("made-archive", tree_files)[0] / NAME
        with _shared(kept) as held:
            if held is not None and cache.remembers(fact("archive", [kept, *tree_files])[0]):
                log(f"no archive given: using {kept}, made from this unchanged tree before")
                yield kept
                return
        try:
            _make(tree, tree_files, kept, cache, log)
        except ConfigError:
            pass  # an unwritable cache folder: a temporary below
        else:
            with _shared(kept) as held:
                if held is not None:  # not removed meanwhile by a run that saw it stale
                    _prune(folder, keep=kept)
                    yield kept
                    return
    with tempfile.TemporaryDirectory(prefix="pakman-archive-") as tmp:
        yield _make(tree, tree_files, Path(tmp) / NAME, cache, log)


def _make(
    tree: Path,
    tree_files: list[Path],
    target: Path,
    cache: HashCache | None,
    log: Callable[[str], None],
) -> Path:
    from pakman import merge

    digest = merge.write_zip(merge.collect([tree]), target)
    if cache is not None:
        cache.remember(fact("archive", [target, *tree_files])[0], 0)
    log(f"no archive given: made {NAME} from the packages tree (sha256 {digest})")
    return target


@contextlib.contextmanager
def _shared(path: Path) -> Iterator[Path | None]:
    """Hold a shared lock on ``path`` while it is used; None when it is gone."""
    try:
        handle = path.open("rb")
    except OSError:
        yield None
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield path if _same_file(handle, path) else None


def _same_file(handle: BinaryIO, path: Path) -> bool:
    """Whether ``path`` still names the file ``handle`` has open (not removed, not replaced)."""
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except OSError:
        return False


def _prune(folder: Path, keep: Path) -> None:
    """Remove zips of other trees that are older than a minute and that nobody holds."""
    now = time.time()
    for other in folder.glob(f"*/{NAME}"):
        if other == keep:
            continue
        with contextlib.suppress(OSError), other.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another run is shipping it
            young = now - os.fstat(handle.fileno()).st_mtime < KEEP_SECONDS
            if not young and _same_file(handle, other):
                other.unlink()
                other.parent.rmdir()
