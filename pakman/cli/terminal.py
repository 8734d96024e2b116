"""The terminal: streams whose failures never stop a job, progress, warnings on stderr,
the --timeout watchdog and the signals a run answers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:
    from pakman.publish.upload import ProgressFactory


# Uploads log from several threads: each line goes out whole, in one write.
_LINES = threading.Lock()


def line_out(line: str) -> None:
    """One whole line on stderr (``print`` writes the text and its newline apart, so
    lines of threads logging at once ran together)."""
    with _LINES:
        sys.stderr.write(line + "\n")


def warn(lines: Sequence[str]) -> None:
    for line in lines:
        line_out(f"warning: {line}")


def log(enabled: bool) -> Callable[[str], None]:
    """Progress lines when ``enabled`` (no progress bar); warnings always."""

    def write(line: str) -> None:
        if enabled or line.startswith("warning:"):
            line_out(line)

    return write


def progress_factory() -> ProgressFactory | None:
    """A byte progress bar on a terminal; plain log lines otherwise."""
    if not sys.stderr.isatty():
        return None

    @contextlib.contextmanager
    def bar(total: int) -> Iterator[Callable[[int], None]]:
        from tqdm import tqdm

        # A terminal that reports no size (some CI ptys) would otherwise get no bar at all.
        size = os.get_terminal_size(sys.stderr.fileno())
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            ncols=size.columns or 80,
            nrows=size.lines or 24,
        ) as t:

            def update(done: int) -> None:
                t.update(done)

            yield update

    return bar


GRACE_SECONDS = 10  # past --timeout, for requests under way to fail on their own


def watchdog(args: argparse.Namespace, *, resumes: bool = True) -> None:
    """End the process a little after --timeout: a request stuck on a server that trickles
    bytes cannot be interrupted from Python, so the run stops itself (exit 3). A timer
    signal rather than a thread, so the run stays single-threaded until it uploads."""
    import signal

    from pakman.pipeline import check_timeout

    seconds = check_timeout(args.timeout)

    def fire(*_: object) -> None:
        import shutil

        from pakman.merge import SCRATCH

        print(
            f"error: {args.command}: gave up after {seconds:g} s (--timeout)"
            + ("; a re-run resumes where this one stopped" if resumes else ""),
            file=sys.stderr,
            flush=True,
        )
        for folder in list(SCRATCH):
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds + GRACE_SECONDS)


class _SafeStream(io.TextIOBase):
    """A text stream whose writes never fail the job: once its reader has gone (a closed
    stdout, a pipe whose reader exited, a full disk), it stops writing and the job goes
    on, to exit with its own code."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.broken = stream is None

    def write(self, text: str) -> int:
        if not self.broken and self._stream is not None:
            try:
                self._stream.write(text)
                if "\n" in text:
                    self._stream.flush()  # a line the reader sees now, or learn it is gone
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken and self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        if self._stream is None:
            raise OSError("no stream")
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"


def take_over() -> None:
    """For the ``pakman`` process: SIGTERM unwinds like an interrupt, and stdout and
    stderr become streams whose failures never stop the job."""
    import signal

    def terminated(*_: object) -> NoReturn:
        # Unwinds like an interrupt, so temporary files (a made archive) are removed.
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminated)
    sys.stdout = _SafeStream(sys.stdout)
    sys.stderr = _SafeStream(sys.stderr)


def leave(status: int) -> NoReturn:
    """Exit with ``status`` once the output is flushed, without the interpreter's teardown.

    Everything pakman writes is closed (and fsynced) by then; tearing down botocore's
    object graph would only add about 50 ms to every run.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
