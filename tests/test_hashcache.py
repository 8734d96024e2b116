from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pakman.hashcache import RACY_NS, HashCache

HASHES = {"sha256": "aa", "md5": "bb", "crc32": 7, "parts": [1, 2]}


def _old_file(path: Path, content: bytes = b"data") -> Path:
    path.write_bytes(content)
    old = time.time_ns() - 10 * RACY_NS
    os.utime(path, ns=(old, old))
    # The ctime cannot be set back: wait until it is clear of the racy window.
    time.sleep(1.5 * RACY_NS / 1e9)
    return path


def test_hit_after_save_and_reload(tmp_path: Path) -> None:
    target = _old_file(tmp_path / "f")
    cache = HashCache(tmp_path / "cache.json")
    assert cache.get(target, target.stat()) is None
    cache.put(target, target.stat(), HASHES)
    cache.save()
    assert HashCache(tmp_path / "cache.json").get(target, target.stat()) == HASHES


def test_one_file_reached_through_a_linked_folder_is_one_entry(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = _old_file(tmp_path / "real" / "f")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cache = HashCache(tmp_path / "cache.json")
    cache.put(tmp_path / "link" / "f", target.stat(), HASHES)
    cache.save()
    again = HashCache(tmp_path / "cache.json")
    assert again.get(target, target.stat()) == HASHES
    relative = Path(os.path.relpath(tmp_path / "link" / "f"))
    assert again.get(relative, target.stat()) == HASHES


def test_changed_file_misses(tmp_path: Path) -> None:
    target = _old_file(tmp_path / "f")
    cache = HashCache(tmp_path / "cache.json")
    cache.put(target, target.stat(), HASHES)
    cache.save()
    _old_file(target, b"other content")  # new size and mtime
    assert HashCache(tmp_path / "cache.json").get(target, target.stat()) is None


def test_racy_entry_is_not_trusted(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"just written")  # mtime is now: within the racy window
    cache = HashCache(tmp_path / "cache.json")
    cache.put(target, target.stat(), HASHES)
    cache.save()
    assert HashCache(tmp_path / "cache.json").get(target, target.stat()) is None


def test_only_entries_used_are_kept(tmp_path: Path) -> None:
    first, second = _old_file(tmp_path / "a"), _old_file(tmp_path / "b")
    cache = HashCache(tmp_path / "cache.json")
    cache.put(first, first.stat(), HASHES)
    cache.put(second, second.stat(), HASHES)
    cache.save()
    again = HashCache(tmp_path / "cache.json")
    assert again.get(first, first.stat()) == HASHES
    again.save()
    assert list(json.loads((tmp_path / "cache.json").read_text())) == [str(first.resolve())]


def test_corrupt_or_unwritable_cache_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    target = _old_file(tmp_path / "f")
    cache = HashCache(path)
    assert cache.get(target, target.stat()) is None
    blocked = HashCache(tmp_path / "file-not-dir" / "cache.json")
    (tmp_path / "file-not-dir").write_text("x")
    blocked.put(target, target.stat(), HASHES)
    blocked.save()  # no exception


def test_rewritten_in_place_with_the_same_size_and_mtime_misses(tmp_path: Path) -> None:
    """unzip -o over the last tree: same inode, size and (fixed) mtime; only ctime moves."""
    target = _old_file(tmp_path / "f", b"old!")
    before = target.stat()
    cache = HashCache(tmp_path / "cache.json")
    cache.put(target, before, HASHES)
    cache.save()
    with target.open("r+b") as handle:  # in place: the inode stays
        handle.write(b"new!")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert HashCache(tmp_path / "cache.json").get(target, after) is None


def test_entries_of_another_shape_are_ignored(tmp_path: Path) -> None:
    target = _old_file(tmp_path / "f")
    key = str(target.resolve())
    stat = target.stat()
    signature = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    for entry in (
        5,
        "text",
        [1, 2],
        [*signature, "later", HASHES],
        [*signature, time.time_ns(), {"sha256": "only"}],
        [*signature, time.time_ns(), ["not", "a", "dict"]],
    ):
        path = tmp_path / "cache.json"
        path.write_text(json.dumps({key: entry}))
        assert HashCache(path).get(target, stat) is None, entry
    path.write_text(json.dumps([1, 2, 3]))
    assert HashCache(path).get(target, stat) is None
