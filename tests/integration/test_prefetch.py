"""The archive and storage read beside verification (pakman.publish.prefetch), each in a
child process of its own: what they hand back, and that none is left behind.

Prefetch forks only in a process with no other thread (as the CLI is when it starts), so
each case runs in a fresh interpreter: pytest's own process may hold threads of earlier
tests' servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pakman.publish.archive import read_archive
from tests.support.deployment import Built

CASES = r"""
import json, os, sys, time
from pathlib import Path
from pakman.publish import prefetch

case, archive = sys.argv[1], Path(sys.argv[2])
out = {}
if case == "both":
    def look(read):
        archived = read()
        return os.getpid(), archived.digest.sha256 if archived else None
    reading = prefetch.Prefetch(archive, look)
    out["children"] = list(reading._children)
    got = reading.result()
    out["looked"] = got.looked
    out["looked_in"], out["sha256"] = got.survey()
    out["entries"] = got.read.entries
elif case == "look fails":
    def look(read):
        raise ValueError("the listing failed")
    got = prefetch.Prefetch(archive, look).result()
    out["read"] = got.read is not None
    try:
        got.survey()
    except ValueError as error:
        out["raised"] = str(error)
elif case == "reader dies":
    prefetch.read_archive = lambda _: os._exit(3)
    got = prefetch.Prefetch(archive, lambda read: read() is None).result()
    out["read"] = got.read is not None
    out["seen"] = got.survey()
elif case == "close":
    reading = prefetch.Prefetch(archive, lambda read: time.sleep(120))
    children = list(reading._children)
    reading.close()
    out["children"] = children
    out["gone"] = []
    for pid in children:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out["gone"].append(pid)
print(json.dumps(out))
"""


def _case(case: str, archive: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", CASES, case, str(archive)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-800:]
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_the_archive_and_what_storage_holds_come_back(deployment_files: Built) -> None:
    """The child reading storage takes the archive's digest from the child reading it."""
    got = _case("both", deployment_files.archive)
    expected = read_archive(deployment_files.archive)
    assert expected is not None
    assert len(got["children"]) == 2
    assert got["looked"] is True
    assert got["looked_in"] == got["children"][1]
    assert got["sha256"] == expected.digest.sha256
    assert got["entries"] == expected.entries


def test_a_look_that_fails_is_raised_in_the_parent(deployment_files: Built) -> None:
    got = _case("look fails", deployment_files.archive)
    assert got == {"read": True, "raised": "the listing failed"}


def test_a_dead_archive_reader_leaves_the_archive_to_the_parent(deployment_files: Built) -> None:
    """Storage is still read; the archive, handed back as None, is read again here."""
    got = _case("reader dies", deployment_files.archive)
    assert got == {"read": False, "seen": True}


def test_close_ends_both_children(deployment_files: Built) -> None:
    """A run that fails during verification leaves no child behind, reading or not."""
    got = _case("close", deployment_files.archive)
    assert len(got["children"]) == 2
    assert got["gone"] == got["children"]
