"""The v2 ``APKINDEX.tar.gz`` that abuild's ``apk index`` writes, signed as abuild-sign does.

Records carry apk's fields in apk's order (``apk_pkg_write_index_entry``); a noarch
package is listed as the index's arch, as ``apk index --rewrite-arch`` does.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pakman import apk
from pakman.apkversion import version_key
from pakman.errors import PackageFormatError, VerificationError
from pakman.repo.state import MEMBER, State, parse
from pakman.sign import DEFAULT_ALGORITHM, signature_stream

# apk's order. C..L are always written, the rest only when set.
FIELDS = ("C", "P", "V", "A", "S", "I", "T", "U", "L", "o", "m", "t", "c", "k", "D", "p", "i")
ALWAYS = frozenset("CPVASITUL")
INDEX_NAME = "APKINDEX.tar.gz"

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

Record = Mapping[str, str]


def record(package: apk.Package, arch: str) -> dict[str, str]:
    """The index record of a verified package, listed under ``arch``."""
    field, info = package.field, package.info
    values = {
        "C": package.checksum,
        "P": field("pkgname"),
        "V": field("pkgver"),
        "A": arch if field("arch") in ("noarch", "all", "") else field("arch"),
        "S": str(package.size),
        "I": field("size") or "0",
        "T": field("pkgdesc"),
        "U": field("url"),
        "L": field("license"),
        "o": field("origin"),
        "m": field("maintainer"),
        "t": field("builddate"),
        "c": field("commit"),
        "k": field("provider_priority"),
        "D": " ".join(info.get("depend", ())),
        "p": " ".join(info.get("provides", ())),
        "i": " ".join(info.get("install_if", ())),
    }
    return {key: value for key, value in values.items() if value or key in ALWAYS}


def filename(entry: Record) -> str:
    return apk.package_filename(dict(entry))


def text(records: Iterable[Record]) -> bytes:
    """The ``APKINDEX`` member: records by name, then version, each ending in a blank line."""
    ordered = sorted(records, key=lambda r: (r.get("P", ""), version_key(r.get("V", "0"))))
    lines = []
    for entry in ordered:
        lines += [f"{key}:{entry[key]}" for key in FIELDS if key in entry]
        lines.append("")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _tar(members: list[tuple[str, bytes]], *, cut: bool) -> bytes:
    """The index stream's tar (short names only: DESCRIPTION, APKINDEX)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
        end = archive.offset
    raw = buffer.getvalue()
    return raw[:end] if cut else raw  # a signature's end-of-archive blocks are cut


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def build(
    records: Iterable[Record],
    description: str,
    key_name: str,
    private: RSAPrivateKey,
    state: State | None = None,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
) -> bytes:
    """A signed index: the signature stream (:func:`pakman.sign.signature_stream`, the one
    signer), then the gzipped tar of ``DESCRIPTION``, ``APKINDEX`` and, when given, pakman's
    state."""
    members = [("DESCRIPTION", description.encode()), ("APKINDEX", text(records))]
    if state is not None:
        members.append((MEMBER, state.to_bytes()))
    signed = _gzip(_tar(members, cut=False))
    return signature_stream(signed, private, key_name, algorithm) + signed


def read(data: bytes, where: str, trusted: Mapping[str, RSAPublicKey]) -> tuple[Record, ...]:
    """The records of an index, refused (exit 1) unless a trusted key signed it."""
    return read_with_state(data, where, trusted)[0]


def read_with_state(
    data: bytes, where: str, trusted: Mapping[str, RSAPublicKey]
) -> tuple[tuple[Record, ...], State]:
    """The records and pakman's state of an index, refused (exit 1) unless a trusted key
    signed it: its records are parsed only then."""
    from pakman.verify import check_signature

    try:
        index = apk.parse_index(data, Path(where))
    except PackageFormatError as error:
        raise VerificationError(f"{error}; refusing to add to it") from None
    problem = check_signature(index.signatures, index.signed, trusted)
    if problem:
        raise VerificationError(f"{where}: {problem}; refusing to add to it")
    try:
        records = index.records
    except PackageFormatError as error:
        raise VerificationError(f"{error}; refusing to add to it") from None
    return records, parse(index.others.get(MEMBER), where)
