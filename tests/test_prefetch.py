"""The archive and storage read beside verification (pakman.publish.prefetch), each in a
child process of its own: what they hand back, and that none is left behind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pakman.publish import prefetch
from pakman.publish.archive import ArchiveRead, read_archive
from tests.conftest import Built


def test_the_archive_and_what_storage_holds_come_back(deployment_files: Built) -> None:
    """The child reading storage takes the archive's digest from the child reading it."""

    def look(read: Callable[[], ArchiveRead | None]) -> tuple[int, str | None]:
        archived = read()
        return os.getpid(), archived.digest.sha256 if archived else None

    reading = prefetch.Prefetch(deployment_files.archive, look)
    children = list(reading._children)
    got = reading.result()
    assert got is not None
    assert got.looked
    assert len(children) == 2
    looked_in, sha256 = got.survey()
    assert looked_in == children[1] != os.getpid()
    expected = read_archive(deployment_files.archive)
    assert expected is not None
    assert got.read == expected
    assert sha256 == expected.digest.sha256


def test_a_look_that_fails_is_raised_in_the_parent(deployment_files: Built) -> None:
    def look(read: Callable[[], ArchiveRead | None]) -> None:
        raise ValueError("the listing failed")

    got = prefetch.Prefetch(deployment_files.archive, look).result()
    assert got is not None
    assert got.read is not None
    with pytest.raises(ValueError, match="the listing failed"):
        got.survey()


def test_a_dead_archive_reader_leaves_the_archive_to_the_parent(
    deployment_files: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage is still read; the archive, handed back as None, is read again here."""
    monkeypatch.setattr(prefetch, "read_archive", lambda _: os._exit(3))
    got = prefetch.Prefetch(deployment_files.archive, lambda read: read() is None).result()
    assert got is not None
    assert got.read is None
    assert got.survey() is True


def test_close_ends_both_children(deployment_files: Built, tmp_path: Path) -> None:
    """A run that fails during verification leaves no child behind, reading or not."""

    def look(read: Callable[[], ArchiveRead | None]) -> None:
        time.sleep(120)

    reading = prefetch.Prefetch(deployment_files.archive, look)
    children = list(reading._children)
    assert len(children) == 2
    reading.close()
    for pid in children:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no longer our child
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
