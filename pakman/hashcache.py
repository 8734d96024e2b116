"""Remember file hashes by (device, inode, size, mtime, ctime), as git's index does.

An unchanged re-publish then reads no file contents. The ctime is what no tool can set
back: a file rewritten in place with the same size and a restored mtime (``unzip -o``
over the last tree, ``touch -r``) has a new ctime and is hashed again. An entry is
trusted only when the file changed clearly before it was hashed, so a file rewritten
within the same clock tick is hashed again ("racy git"). A cache file that is corrupt
or of another shape is ignored. Only the entries a run used are saved, so the cache
stays the size of the tree last published.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

RACY_NS = 100_000_000  # 100 ms
HASHES = ("sha256", "md5", "crc32", "parts")  # what an entry must hold to be used


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def real_path(path: Path) -> str:
    """The absolute path of ``path`` with its folder's links resolved, each folder once
    (a tree's files share a handful of folders; resolving each file costs a syscall per
    path component)."""
    return os.path.join(_real_folder(str(path.absolute().parent)), path.name)


def default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pakman" / "hashes-v3.json"


class HashCache:
    """A small JSON map: real path -> stat signature and hashes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, list[object]] = {}
        self._used: dict[str, list[object]] = {}
        self._lock = threading.Lock()
        if path is not None:
            try:
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded
            except (OSError, ValueError):
                pass

    @staticmethod
    def signature(stat: os.stat_result) -> list[object]:
        """What identifies a file's contents without reading them."""
        return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]

    def get(self, path: Path, stat: os.stat_result) -> dict[str, Any] | None:
        key = real_path(path)
        entry = self._entries.get(key)
        if not isinstance(entry, list) or len(entry) != 7:
            return None
        if entry[:5] != self.signature(stat):
            return None
        hashed_at, hashes = entry[5], entry[6]
        changed = max(stat.st_mtime_ns, stat.st_ctime_ns)
        if not isinstance(hashed_at, int) or changed > hashed_at - RACY_NS:
            return None
        if not isinstance(hashes, dict) or not all(k in hashes for k in HASHES):
            return None
        with self._lock:
            self._used[key] = entry
        return hashes

    def remembers(self, fact: str) -> bool:
        """Whether ``fact`` (a digest naming files by their signatures) was proved before.

        A fact is trusted only when every file it names changed clearly before it was
        proved, the same racy-git rule as for hashes.
        """
        key = f"fact:{fact}"
        with self._lock:
            entry = self._used.get(key, self._entries.get(key))
        if not isinstance(entry, list) or len(entry) != 2:
            return False
        newest, proved_at = entry
        if not isinstance(newest, int) or not isinstance(proved_at, int):
            return False
        if newest > proved_at - RACY_NS:
            return False
        with self._lock:
            self._used[key] = entry
        return True

    def remember(self, fact: str, newest_change_ns: int) -> None:
        with self._lock:
            self._used[f"fact:{fact}"] = [newest_change_ns, time.time_ns()]

    def put(self, path: Path, stat: os.stat_result, hashes: dict[str, Any]) -> None:
        with self._lock:
            self._used[real_path(path)] = [*self.signature(stat), time.time_ns(), hashes]

    def save(self) -> None:
        """Write the cache atomically; a cache that cannot be written is simply skipped."""
        if self.path is None or self._used == self._entries:
            return
        from pakman.errors import ConfigError
        from pakman.files import atomic_write

        with contextlib.suppress(ConfigError):
            atomic_write(self.path, json.dumps(self._used).encode(), 0o600)


def fact(kind: str, paths: list[Path], *extra: str) -> tuple[str, int]:
    """A digest naming ``paths`` by their signatures (never their contents), plus ``extra``
    (a key fingerprint, say); and the newest change among them, for the racy check."""
    import hashlib

    digest = hashlib.sha256(kind.encode())
    newest = 0
    for path in sorted(paths):
        stat = path.stat()
        newest = max(newest, stat.st_mtime_ns, stat.st_ctime_ns)
        digest.update(json.dumps([real_path(path), *HashCache.signature(stat)]).encode())
    for item in extra:
        digest.update(b"\0" + item.encode())
    return digest.hexdigest(), newest
