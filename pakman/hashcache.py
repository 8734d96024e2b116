"""Remember file hashes by (device, inode, size, mtime), as git's index does.

An unchanged re-publish then reads no file contents. An entry is trusted only when
the file's mtime is clearly older than the moment it was hashed, so a file
rewritten within the same clock tick is hashed again ("racy git"). Only the entries a
run used are saved, so the cache stays the size of the tree last published.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

RACY_NS = 100_000_000  # 100 ms


def default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pakman" / "hashes-v1.json"


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
    def _signature(stat: os.stat_result) -> list[object]:
        return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]

    def get(self, path: Path, stat: os.stat_result) -> dict[str, Any] | None:
        key = str(path.resolve())
        entry = self._entries.get(key)
        if not entry or entry[:4] != self._signature(stat):
            return None
        hashed_at, hashes = entry[4], entry[5]
        if not isinstance(hashed_at, int) or stat.st_mtime_ns > hashed_at - RACY_NS:
            return None
        if not isinstance(hashes, dict):
            return None
        with self._lock:
            self._used[key] = entry
        return hashes

    def put(self, path: Path, stat: os.stat_result, hashes: dict[str, Any]) -> None:
        with self._lock:
            self._used[str(path.resolve())] = [*self._signature(stat), time.time_ns(), hashes]

    def save(self) -> None:
        """Write the cache atomically; a cache that cannot be written is simply skipped."""
        if self.path is None or self._used == self._entries:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(self._used))
            temporary.replace(self.path)
        except OSError:
            pass
