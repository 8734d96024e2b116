"""The archive and storage read beside verification, in a child process started before
the packages are verified: the archive's digests and the SHA-256 of every entry
(:mod:`.archive`) and, side by side with that read, what storage holds (one listing, the
checksums it keeps, the manifest; the archive's key once its digest is known).

Verification forks to check packages on every core, which it only does while the process
has no other thread; the archive (as big as every package together) and the requests
(botocore's import and client, one HEAD per object) would otherwise wait for it to end.
The child hands back only what it read: the parent still compares every entry and every
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
from concurrent.futures import ThreadPoolExecutor
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


def _prefetch(archive: Path, look: Look | None) -> Prefetched:
    if look is None:
        return Prefetched(read_archive(archive))
    # The requests wait on the network and botocore's Python; the read hashes with the
    # GIL released: side by side.
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_archive, archive)
        try:
            seen = look(reading.result)
        except Exception as error:  # the parent raises it where it would have met it
            return Prefetched(reading.result(), True, error=error)
        return Prefetched(reading.result(), True, seen)


class Prefetch:
    """An archive (and storage, with ``look``) being read in a child process;
    :meth:`result` waits for it (None: read them here instead), :meth:`close` ends the
    child if nobody waited."""

    def __init__(self, archive: Path, look: Look | None = None) -> None:
        self.archive = archive
        self._pid = 0
        self._pipe = -1
        # Forking beside other threads is not safe; verification, which forks next, needs
        # this process to stay single-threaded, so the child is a process, not a thread.
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, hand the result over, leave without cleanup
            code = 1
            try:
                os.close(read_end)
                # The parent's handlers (removing its scratch folders) are not the child's.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps(_prefetch(archive, look)))
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def result(self) -> Prefetched | None:
        if not self._pid:
            return None
        try:
            with os.fdopen(self._pipe, "rb") as pipe:
                data = pipe.read()
        finally:
            self._pipe = -1
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
        # Our own child's answer; should it have died, the archive is read here instead.
        read = pickle.loads(data) if status == 0 and data else None  # noqa: S301
        return read if isinstance(read, Prefetched) else None

    def close(self) -> None:
        if self._pid:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            self._pid = 0
        if self._pipe >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pipe)
            self._pipe = -1
