"""One read of the archive to ship: its digests (what names its key and proves it in
storage) and the SHA-256 of every package entry's bytes as a reader extracts them (what
:func:`pakman.publish.plan.check_archive` compares with the verified tree).

Entries are stored uncompressed (``pakman merge`` writes them so: packages are gzip
already), so their bytes are ranges of the file: they are hashed from the same read as
the whole file, with no second read and no CRC-32 pass. An entry stored any other way (or
whose local header disagrees with the central directory) is read through :mod:`zipfile`
instead, as a reader extracts it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakman import tree
from pakman.digest import READ_CHUNK, Beside, Digest, Digester

LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip's local file header, 30 bytes
LOCAL_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class ArchiveRead:
    """The archive's digests and, by package entry name, the SHA-256 of the bytes a
    reader extracts; None where a reader fails. A stored entry's CRC-32 is not checked
    here: :func:`~pakman.publish.plan.check_archive` compares it with the verified file's
    and extracts again any entry whose SHA-256 differs."""

    digest: Digest
    entries: dict[str, str | None]


def entry_sha256(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """The SHA-256 of the entry's bytes as :mod:`zipfile` extracts them (checking their
    CRC-32); None if they fail it."""
    digest = hashlib.sha256()
    try:
        with zipped.open(info) as member:
            while block := member.read(READ_CHUNK):
                digest.update(block)
    except zipfile.BadZipFile:
        return None
    return digest.hexdigest()


def _stored_range(handle: Any, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    """Where a stored, unencrypted entry's bytes lie in the file, read from its local
    header as :mod:`zipfile` reads it (same name, no encryption, no patch data); None for
    any other entry, which is then extracted instead. A reader of a stored entry takes
    exactly these bytes, and checks them against the entry's CRC-32, which
    :func:`~pakman.publish.plan.check_archive` compares with the verified file's."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x61:
        return None
    handle.seek(info.header_offset)
    header = handle.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        return None
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != LOCAL_MAGIC:
        return None
    name_length, extra_length = fields[10], fields[11]
    if handle.read(name_length) != info.orig_filename.encode(
        "utf-8" if info.flag_bits & 0x800 else "cp437"
    ):
        return None
    start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    if info.compress_size != info.file_size:
        return None
    return start, start + info.compress_size


def read_archive(archive: Path) -> ArchiveRead | None:
    """The archive's digests and its package entries' SHA-256s, from one read; None if it
    is not a readable zip, for :func:`~pakman.publish.plan.check_archive` to say so."""
    try:
        with zipfile.ZipFile(archive) as zipped, archive.open("rb") as handle:
            ranges: list[tuple[int, int, str]] = []
            extracted: list[zipfile.ZipInfo] = []
            for info in zipped.infolist():
                if info.is_dir() or not tree.is_package_file(info.filename.split("/")[-1]):
                    continue
                where = _stored_range(handle, info)
                if where is None:
                    extracted.append(info)
                else:
                    ranges.append((*where, info.filename))
            digest, entries = _read_once(handle, ranges)
            for info in extracted:
                entries[info.filename] = entry_sha256(zipped, info)
    except Exception:  # check_archive reads it again and says what is wrong
        return None
    return ArchiveRead(digest, entries)


def _read_once(
    handle: Any, ranges: list[tuple[int, int, str]]
) -> tuple[Digest, dict[str, str | None]]:
    """The whole file's digests and the SHA-256 of each byte range, by name, from one
    sequential read; ranges may overlap (a forged zip's entries can). The whole file's
    digests and the ranges' are taken side by side (hashlib releases the GIL)."""
    handle.seek(0)
    whole = Digester(os.fstat(handle.fileno()).st_size, crc32=False)
    pending = sorted(ranges)
    active: list[tuple[int, int, str, Any]] = []
    done: dict[str, str | None] = {}
    offset = 0
    following = 0
    beside = Beside()
    try:
        while block := handle.read(READ_CHUNK):
            view = memoryview(block)
            beside.run(whole.update, view)
            end = offset + len(block)
            while following < len(pending) and pending[following][0] < end:
                start, stop, name = pending[following]
                active.append((start, stop, name, hashlib.sha256()))
                following += 1
            still = []
            for start, stop, name, digest in active:
                digest.update(view[max(start, offset) - offset : min(stop, end) - offset])
                if stop <= end:
                    done[name] = digest.hexdigest()
                else:
                    still.append((start, stop, name, digest))
            active = still
            offset = end
    finally:
        beside.close()
    # The file ends before these entries do: a reader fails too.
    unfinished = [name for _, _, name, _ in active] + [name for _, _, name in pending[following:]]
    done |= dict.fromkeys(unfinished)
    return whole.result(), done
