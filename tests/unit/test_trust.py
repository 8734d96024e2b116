"""Only bytes read in this run are trusted: nothing remembered decides what is verified,
shipped or deleted.

Each case was a way through the caches pakman used to keep (a hash cache with "proved"
facts, a kept archive with a clean-up), reproduced here as a hostile user or a racing
writer would: a second local user's planted cache, a planted link, rewrites while a run
reads, a filesystem with 1-second timestamps, a store or proxy that lies, a FIFO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pakman import merge, pipeline
from pakman.errors import ConfigError
from pakman.publish.deployment import Deployment
from pakman.storage.options import StoreOptions
from pakman.trust import trust_files
from tests.support.deployment import Built
from tests.support.instellar import SHA


def _tamper(package: Path) -> None:
    """Other bytes, same size, same inode: the signature no longer verifies."""
    data = bytearray(package.read_bytes())
    data[-40] ^= 0xFF
    with package.open("r+b") as handle:
        handle.write(bytes(data))


def _manifests(store: Path) -> list[Path]:
    return sorted(store.rglob("manifest.json")) if store.exists() else []


def _publish(built: Built, store: Path) -> Any:
    trust = trust_files([str(built.public_key)])
    options = StoreOptions.resolve({}, store=f"file://{store}", create_bucket=True)
    target = Deployment.resolve("acme/app", SHA)
    return pipeline.publish(built.packages, None, target, trust, options)


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
