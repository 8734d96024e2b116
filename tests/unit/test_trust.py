"""Only bytes read in this run are trusted: nothing remembered decides what is verified,
shipped or deleted.

Each case was a way through the caches pakman used to keep (a hash cache with "proved"
facts, a kept archive with a clean-up), reproduced here as a hostile user or a racing
writer would: a second local user's planted cache, a planted link, rewrites while a run
reads, a filesystem with 1-second timestamps, a store or proxy that lies, a FIFO.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pakman import merge
from pakman.errors import ConfigError
from tests.integration.test_trust import _manifests, _publish, _tamper
from tests.support.deployment import Built


def test_a_package_rewritten_while_the_archive_is_made_is_refused(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The made archive is checked against the verified bytes, like a given one: the old
    code trusted it by construction and shipped an entry other than the stored object."""
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app1-*.apk"))
    write_zip = merge.write_zip

    def racing(merged: merge.Merged, output: Path) -> str:
        _tamper(package)  # a writer gets in between verification and zipping
        return write_zip(merged, output)

    monkeypatch.setattr(merge, "write_zip", racing)
    store = tmp_path / "store"
    with pytest.raises(
        ConfigError, match=r"packages\.zip: acme/x86_64/app1-1\.0\.0-r0\.apk differs"
    ):
        _publish(deployment_files, store)
    assert _manifests(store) == []
