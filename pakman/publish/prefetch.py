"""The archive and storage read beside verification, in child processes started before
the packages are verified: the archive's digests and the SHA-256 of every entry
(:mod:`.archive`) in one, and, side by side with that read, what storage holds (one
listing, the checksums it keeps, the manifest; the archive's key once its digest is
known) in another.

Verification forks to check packages on every core, which it only does while the process
has no other thread; the archive (as big as every package together) and the requests
(a listing, one HEAD per object, the manifest) would otherwise wait for it to end.
The children hand back only what they read: the parent still compares every entry and every
stored checksum with the verified digests (:func:`pakman.publish.plan.check_archive`,
:func:`pakman.publish.plan.reconcile`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman.publish.archive import ArchiveRead, read_archive

# Given a call that waits for the archive's read, what storage holds (a Survey), read in
# the child: storage is read while the archive is, the read awaited only once needed.
Look = Callable[[Callable[[], ArchiveRead | None]], Any]


@dataclass(frozen=True)
class Prefetched:
    read: ArchiveRead | None  # None: read the archive again in the parent
    looked: bool = False  # whether storage was read
    seen: Any = None  # what ``look`` returned
    error: BaseException | None = None  # what ``look`` raised, raised again in the parent

    def survey(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.seen


def _looked(from_reader: int, look: Look) -> Prefetched:
    """What ``look`` reads of storage, with the archive's read from the process reading it
    (awaited only when ``look`` needs its digest, and at the end)."""
    got: list[ArchiveRead | None] = []

    def archive_read() -> ArchiveRead | None:
        if not got:
            read = _receive(from_reader)
            got.append(read if isinstance(read, ArchiveRead) else None)
        return got[0]

    try:
        seen = look(archive_read)
    except Exception as error:  # the parent raises it where it would have met it
        return Prefetched(archive_read(), True, error=error)
    return Prefetched(archive_read(), True, seen)


def _fork(work: Callable[[], Any]) -> tuple[int, int]:
    """A child process handing the pickled result of ``work`` over a pipe: its pid and
    the pipe's read end."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, hand the result over, leave without cleanup
        code = 1
        try:
            os.close(read_end)
            # The parent's handlers (removing its scratch folders) are not the child's.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(work()))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _receive(pipe: int) -> Any:
    """What our own child handed over; None if it handed nothing whole (it died)."""
    with os.fdopen(pipe, "rb") as reading:
        data = reading.read()
    try:
        return pickle.loads(data) if data else None  # noqa: S301 - our own child's answer
    except Exception:
        return None


class Prefetch:
    """An archive (and storage, with ``look``) being read in child processes;
    :meth:`result` waits for them (None: read them here instead), :meth:`close` ends the
    children if nobody waited.

    The archive is read in a process of its own and storage in another, which takes the
    archive's digest from the first when it needs it: the hashing (C, both cores) and
    the requests (Python, one core) do not wait on each other, nor on verification's two
    processes.
    """

    def __init__(self, archive: Path, look: Look | None = None) -> None:
        self.archive = archive
        self._children: list[int] = []  # the last one hands the result over
        self._pipe = -1
        # Forking beside other threads is not safe; verification, which forks next, needs
        # this process to stay single-threaded, so the children are processes.
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        reader, from_reader = _fork(lambda: read_archive(archive))
        self._children.append(reader)
        if look is None:
            self._pipe = from_reader
            return
        try:
            looker, self._pipe = _fork(lambda: _looked(from_reader, look))
        finally:
            os.close(from_reader)  # the looking child reads it
        self._children.append(looker)

    def result(self) -> Prefetched | None:
        if not self._children:
            return None
        try:
            got = _receive(self._pipe)
        finally:
            self._pipe = -1
            statuses = [os.waitpid(pid, 0)[1] for pid in self._children]
            self._children = []
        # Should the child have died, the archive (and storage) are read here instead.
        if statuses[-1] != 0:
            return None
        if isinstance(got, ArchiveRead):
            return Prefetched(got)
        return got if isinstance(got, Prefetched) else None

    def close(self) -> None:
        for pid in self._children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self._children = []
        if self._pipe >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pipe)
            self._pipe = -1
