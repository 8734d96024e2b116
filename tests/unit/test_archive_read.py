"""One read of the archive (pakman.publish.archive) tells what a reader extracts: each
package entry's SHA-256 equals that of zipfile's extraction, or is None where extraction
fails, however the zip was written."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

from pakman.digest import digest_file
from pakman.publish.archive import entry_sha256, read_archive
from tests.support.deployment import Built

ENTRIES = {
    "acme/x86_64/a-1.0-r0.apk": b"a" * 300_000,
    "acme/x86_64/b-1.0-r0.apk": bytes(range(256)) * 5000,
    "acme/aarch64/c-1.0-r0.apk": b"",
    "acme/x86_64/APKINDEX.tar.gz": b"index",
}


def _extracted(archive: Path) -> dict[str, str | None]:
    with zipfile.ZipFile(archive) as zipped:
        return {i.filename: entry_sha256(zipped, i) for i in zipped.infolist() if not i.is_dir()}


def _write(archive: Path, deflated: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in ENTRIES.items():
            kind = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            zipped.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, kind)


def test_the_archive_from_merge_reads_as_a_reader_extracts_it(deployment_files: Built) -> None:
    read = read_archive(deployment_files.archive)
    assert read is not None
    # Its CRC-32 is not taken: nothing uses the archive's.
    assert read.digest == dataclasses.replace(digest_file(deployment_files.archive), crc32=None)
    assert read.entries == _extracted(deployment_files.archive)
    assert len(read.entries) > 3


def test_stored_and_deflated_entries_alike(tmp_path: Path) -> None:
    archive = tmp_path / "packages.zip"
    _write(archive, deflated={"acme/x86_64/b-1.0-r0.apk"})
    read = read_archive(archive)
    assert read is not None
    assert read.entries == {k: hashlib.sha256(v).hexdigest() for k, v in ENTRIES.items()}


def test_an_entry_a_reader_refuses_is_not_hashed_from_its_bytes(tmp_path: Path) -> None:
    """A local header naming another file: zipfile refuses to extract it, so it has no
    SHA-256. A stored byte flipped: the SHA-256 of the bytes as they are (not the
    original's), which check_archive then finds failing their CRC-32."""
    archive = tmp_path / "packages.zip"
    _write(archive)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zipped:
        renamed, flipped = (
            zipped.getinfo("acme/x86_64/a-1.0-r0.apk"),
            zipped.getinfo("acme/x86_64/b-1.0-r0.apk"),
        )
    data[renamed.header_offset + 30] ^= 0x01  # the first letter of its local name
    start = flipped.header_offset + 30 + len(flipped.filename) + len(flipped.extra)
    data[start + 7] ^= 0xFF
    archive.write_bytes(bytes(data))
    read = read_archive(archive)
    assert read is not None
    assert read.entries["acme/x86_64/a-1.0-r0.apk"] is None
    as_read = hashlib.sha256(bytes(data[start : start + flipped.file_size])).hexdigest()
    assert read.entries["acme/x86_64/b-1.0-r0.apk"] == as_read
    assert as_read != hashlib.sha256(ENTRIES["acme/x86_64/b-1.0-r0.apk"]).hexdigest()
    unchanged = {k: v for k, v in read.entries.items() if k.startswith("acme/aarch64")}
    assert unchanged == {k: v for k, v in _extracted(archive).items() if k in unchanged}


def test_not_a_zip_is_none(tmp_path: Path) -> None:
    archive = tmp_path / "packages.zip"
    archive.write_bytes(b"not a zip" * 100)
    assert read_archive(archive) is None
