"""Reading classic (v2) Alpine packages and indexes: gzip streams, signatures, records.

A v2 ``.apk`` is three gzip streams (signature, control, data); an
``APKINDEX.tar.gz`` is two (signature, index). Signatures cover the raw
compressed bytes of the stream that follows them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pakman.digest import Beside, Digest, Digester, digest_bytes
from pakman.errors import PackageFormatError

GZIP_MAGIC = b"\x1f\x8b"
# The most a signature, control or index stream may inflate to. abuild's are kilobytes
# (an index of thousands of packages a few MiB): a small file that inflates past this
# is a decompression bomb, refused before it is held in memory.
MAX_INFLATED = 64 * 1024 * 1024
ADB_MAGICS = (b"ADB.", b"ADBd", b"ADBc")
SIGNATURE_PREFIXES: tuple[tuple[str, Literal["sha1", "sha256"]], ...] = (
    (".SIGN.RSA256.", "sha256"),
    (".SIGN.RSA.", "sha1"),
)


@dataclass(frozen=True)
class Signature:
    """One ``.SIGN.RSA[256].<key_name>`` entry."""

    algorithm: Literal["sha1", "sha256"]
    key_name: str
    value: bytes


@dataclass(frozen=True)
class Package:
    """A parsed v2 package: what verification and indexing need."""

    path: Path
    size: int
    signatures: tuple[Signature, ...]
    control: bytes  # the raw control gzip stream, as signed
    info: dict[str, tuple[str, ...]]
    data_sha256: str  # of the raw data gzip stream
    digest: Digest | None = None  # of the whole file, from the same read, when asked for

    @property
    def checksum(self) -> str:
        """The index ``C:`` value: Q1 + base64 SHA-1 of the control stream."""
        return "Q1" + base64.b64encode(hashlib.sha1(self.control).digest()).decode()  # noqa: S324

    def field(self, key: str) -> str:
        values = self.info.get(key, ())
        return values[0] if values else ""


@dataclass(frozen=True)
class Index:
    """A parsed v2 ``APKINDEX.tar.gz``. Its records are parsed when first asked for:
    after its signature is checked, so an unsigned index costs nothing to refuse."""

    path: Path
    signatures: tuple[Signature, ...]
    signed: bytes  # the raw index gzip stream, as signed
    description: str
    text: bytes  # the APKINDEX member
    digest: Digest  # of the whole file, from the same read
    others: dict[str, bytes] = field(default_factory=dict)  # members apk does not read

    @functools.cached_property
    def records(self) -> tuple[dict[str, str], ...]:
        return parse_index_text(self.text.decode("utf-8", "replace"), self.path)


class _Truncated(PackageFormatError):
    """A gzip stream runs past the bytes read so far."""


def _streams(data: bytes, path: Path, expected: int) -> list[memoryview]:
    """Split concatenated gzip streams; the last one is taken to the end of the file."""
    if data[:4] in ADB_MAGICS:
        raise PackageFormatError(f"{path}: apk v3 format is not supported yet")
    if data[:2] != GZIP_MAGIC:
        raise PackageFormatError(f"{path}: not a v2 apk file (no gzip stream)")
    streams = []
    offset = 0
    view = memoryview(data)
    for _ in range(expected - 1):
        end = _stream_end(view, offset, path)
        streams.append(view[offset:end])
        offset = end
        if offset >= len(data):
            raise _Truncated(
                f"{path}: truncated: expected {expected} gzip streams, found {len(streams)}"
            )
        if data[offset : offset + 2] != GZIP_MAGIC:
            raise PackageFormatError(
                f"{path}: truncated: expected {expected} gzip streams, found {len(streams)}"
            )
    streams.append(view[offset:])
    return streams


def _stream_end(view: memoryview, offset: int, path: Path, chunk: int = 4096) -> int:
    """Where the gzip stream starting at ``offset`` ends, inflating it chunk by chunk.

    Signature and control streams are small; feeding the whole rest of the file would
    copy the data stream into ``unused_data`` for nothing.
    """
    inflater = zlib.decompressobj(wbits=31)
    position = offset
    inflated = 0
    pending: bytes | memoryview = b""
    while not inflater.eof:
        if not pending:
            if position >= len(view):
                raise _Truncated(f"{path}: truncated: gzip stream at byte {offset} never ends")
            pending = view[position : position + chunk]
            position += len(pending)
        try:
            inflated += len(inflater.decompress(pending, chunk * 16))
        except zlib.error:
            raise PackageFormatError(f"{path}: corrupt gzip stream at byte {offset}") from None
        pending = inflater.unconsumed_tail
        if inflated > MAX_INFLATED:
            raise PackageFormatError(
                f"{path}: the gzip stream at byte {offset} inflates past"
                f" {MAX_INFLATED // (1024 * 1024)} MiB (a decompression bomb?)"
            )
    return position - len(pending) - len(inflater.unused_data)


def _members(stream: bytes | memoryview, path: Path, what: str) -> dict[str, bytes]:
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(stream, MAX_INFLATED + 1)
    except zlib.error:
        raise PackageFormatError(f"{path}: corrupt {what} stream") from None
    if len(raw) > MAX_INFLATED:
        raise PackageFormatError(
            f"{path}: the {what} stream inflates past {MAX_INFLATED // (1024 * 1024)} MiB"
            " (a decompression bomb?)"
        )
    try:
        return _ustar_members(raw)
    except _NotPlainUstar:
        return _tarfile_members(raw, path, what)
    except ValueError:
        raise PackageFormatError(f"{path}: the {what} stream is not a tar archive") from None


class _NotPlainUstar(Exception):
    """A header only tarfile reads (pax, GNU long names, base-256 sizes)."""


def _ustar_members(raw: bytes) -> dict[str, bytes]:
    """Regular files of a plain ustar stream, as abuild writes control, signature and index
    streams: a header walk several times faster than :mod:`tarfile` (verify reads one per
    package). abuild cuts the end-of-archive blocks, so the data may simply end."""
    members: dict[str, bytes] = {}
    offset = 0
    while offset + 512 <= len(raw):
        header = raw[offset : offset + 512]
        if not any(header):
            break
        stored = header[148:156].strip(b" \0")
        if not stored.isdigit() or int(stored, 8) != sum(header[:148]) + 256 + sum(header[156:]):
            raise ValueError("bad header checksum")
        kind = header[156:157]
        if kind not in (b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6") or header[124] & 0x80:
            raise _NotPlainUstar
        name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345] != 0:
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        size = int(header[124:136].strip(b" \0") or b"0", 8)
        start = offset + 512
        if start + size > len(raw):
            raise ValueError("truncated member")
        if kind in (b"0", b"\0"):
            members[name.decode("utf-8", "replace")] = raw[start : start + size]
        offset = start + (size + 511) // 512 * 512
    if offset == 0:
        raise ValueError("no tar header")
    return members


def _tarfile_members(raw: bytes, path: Path, what: str) -> dict[str, bytes]:
    import io
    import tarfile

    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    members[member.name] = extracted.read() if extracted else b""
    except tarfile.TarError:
        raise PackageFormatError(f"{path}: the {what} stream is not a tar archive") from None
    return members


def _signatures(stream: bytes | memoryview, path: Path) -> tuple[Signature, ...]:
    found = []
    for name, value in _members(stream, path, "signature").items():
        for prefix, algorithm in SIGNATURE_PREFIXES:
            if name.startswith(prefix):
                found.append(Signature(algorithm, name[len(prefix) :], value))
                break
    if not found:
        raise PackageFormatError(f"{path}: unsigned: no .SIGN.RSA entry in the first stream")
    return tuple(found)


def parse_pkginfo(text: str) -> dict[str, tuple[str, ...]]:
    """``key = value`` lines; keys like ``depend`` may repeat. Lines end at ``\n`` only,
    as apk reads them: a CR or other line break inside a value stays in the value."""
    info: dict[str, list[str]] = {}
    for line in text.split("\n"):
        if not line or line.startswith("#") or " = " not in line:
            continue
        key, value = line.split(" = ", 1)
        info.setdefault(key.strip(), []).append(value)
    return {key: tuple(values) for key, values in info.items()}


HEAD_CHUNK = 256 * 1024  # signature and control streams fit in this, nearly always
READ_CHUNK = 1024 * 1024


def read_package(path: Path, *, digest: bool = False) -> Package:
    """Read a v2 package file: its head in memory, its data stream hashed as it streams by.

    Memory stays bounded whatever the package's size; only a head (signature and control
    streams) that runs past the inflation cap is refused. With ``digest``, the whole
    file's digests come from the same read (what publish ships).
    """
    try:
        handle = path.open("rb")
    except OSError as error:
        raise PackageFormatError(f"{path}: cannot read: {error.strerror}") from None
    with handle:
        whole = Digester(os.fstat(handle.fileno()).st_size) if digest else None
        head = handle.read(HEAD_CHUNK)
        while True:
            try:
                signature, control, payload = _streams(head, path, 3)
                break
            except _Truncated:
                more = handle.read(len(head))
                if not more or len(head) > MAX_INFLATED:
                    raise
                head += more
        if whole is not None:
            whole.update(head)
        data_hash = hashlib.sha256(payload)
        # A big file's whole digests (two SHA-256s and a CRC-32) are taken on a second
        # core, beside its datahash.
        beside = Beside() if whole is not None and whole.multipart else None
        try:
            while block := handle.read(READ_CHUNK):
                if beside is not None and whole is not None:
                    beside.run(whole.update, block)
                elif whole is not None:
                    whole.update(block)
                data_hash.update(block)
        finally:
            if beside is not None:
                beside.close()
        size = handle.tell()
    members = _members(control, path, "control")
    if ".PKGINFO" not in members:
        raise PackageFormatError(f"{path}: no .PKGINFO in the control stream")
    return Package(
        path=path,
        size=size,
        signatures=_signatures(signature, path),
        control=bytes(control),
        info=parse_pkginfo(members[".PKGINFO"].decode("utf-8", "replace")),
        data_sha256=data_hash.hexdigest(),
        digest=whole.result() if whole is not None else None,
    )


# The most records an index may hold: Alpine's biggest (edge/community) holds ~25,000.
MAX_RECORDS = 200_000


def parse_index_text(text: str, path: Path = Path("APKINDEX")) -> tuple[dict[str, str], ...]:
    """APKINDEX records: ``X:value`` lines (ending at ``\n`` only, as apk reads them), a
    blank line between records; more than :data:`MAX_RECORDS` are refused before any
    is held in memory."""
    if text.count("\n\n") > MAX_RECORDS:
        raise PackageFormatError(f"{path}: holds more than {MAX_RECORDS} records")
    records = []
    for block in text.split("\n\n"):
        record = {}
        for line in block.split("\n"):
            if len(line) >= 2 and line[1] == ":":
                record[line[0]] = line[2:]
        if record:
            records.append(record)
    return tuple(records)


def read_index(path: Path) -> Index:
    """Read a signed v2 APKINDEX.tar.gz."""
    return parse_index(_read(path), path)


def parse_index(data: bytes, path: Path) -> Index:
    """A signed v2 APKINDEX.tar.gz from its bytes (``path`` names it in errors)."""
    if len(data) > MAX_INFLATED:
        raise PackageFormatError(f"{path}: larger than an index can be")
    signature, signed = _streams(data, path, 2)
    members = _members(signed, path, "index")
    if "APKINDEX" not in members:
        raise PackageFormatError(f"{path}: no APKINDEX entry in the index")
    return Index(
        path=path,
        signatures=_signatures(signature, path),
        signed=bytes(signed),
        description=members.get("DESCRIPTION", b"").decode("utf-8", "replace").strip(),
        text=members["APKINDEX"],
        digest=digest_bytes(data),
        others={k: v for k, v in members.items() if k not in ("APKINDEX", "DESCRIPTION")},
    )


def _read(path: Path) -> bytes:
    """A whole index file; an index is kilobytes, so a huge one is refused, not read."""
    try:
        with path.open("rb") as handle:
            # Its size first: read(n) would take an n-byte buffer whatever the file holds.
            if os.fstat(handle.fileno()).st_size > MAX_INFLATED:
                raise PackageFormatError(f"{path}: larger than an index can be")
            data = handle.read()
    except OSError as error:
        raise PackageFormatError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > MAX_INFLATED:
        raise PackageFormatError(f"{path}: larger than an index can be")
    return data


def package_filename(record: dict[str, str]) -> str:
    """The file name abuild gives the package an index record describes."""
    return f"{record.get('P', '')}-{record.get('V', '')}.apk"
