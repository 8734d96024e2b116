"""Signing packages and indexes with the real key, in PAKman's own code: the one signer.

The build signs with a throwaway key (abuild cannot do without one); :func:`sign_tree` then
replaces each signature stream with one made here, keeping every other byte. A package's
control stream (what the index's ``C:`` checksum and the signature cover) and its data
stream are kept byte for byte; an index's index stream likewise. Nothing of the
application runs where the key is used.

Output is deterministic: RSA PKCS#1 v1.5 signatures are, and the signature tar and gzip
headers carry fixed times and owners, so the same tree and key give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pakman import apk, tree
from pakman.errors import KeyMaterialError, PackageFormatError, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

Algorithm = Literal["sha1", "sha256"]
# The signature entry's name prefix per digest, as apk-tools reads it (extract_v2.c).
PREFIXES: dict[str, str] = {"sha1": ".SIGN.RSA.", "sha256": ".SIGN.RSA256."}
# RSA-SHA256 is read by every apk-tools since 2.7.0 (2017), so by every Alpine branch
# PAKman builds for (docs/security.md); SHA-1 stays available as abuild's default.
DEFAULT_ALGORITHM: Algorithm = "sha256"
# A key is a file in /etc/apk/keys: its name is one path component.
MAX_KEY_NAME = 255


@dataclass(frozen=True)
class SignReport:
    """What :func:`sign_tree` signed: paths relative to the tree, sorted."""

    key_name: str
    algorithm: str
    files: tuple[str, ...]  # every package and index, now signed by key_name
    changed: tuple[str, ...]  # those rewritten (the others already carried this signature)
    replaced: tuple[str, ...] = field(default=())  # names of the keys whose signatures went

    @property
    def packages(self) -> int:
        return sum(1 for name in self.files if not name.endswith(tree.INDEX_NAME))

    @property
    def indexes(self) -> int:
        return len(self.files) - self.packages

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_name": self.key_name,
            "algorithm": self.algorithm,
            "packages": self.packages,
            "indexes": self.indexes,
            "files": list(self.files),
            "changed": list(self.changed),
            "replaced": list(self.replaced),
        }

    def line(self) -> str:
        text = (
            f"signed {self.packages} package(s) and {self.indexes} index(es) with"
            f" {self.key_name} (RSA-{self.algorithm.upper()});"
            f" {len(self.changed)} rewritten, {len(self.files) - len(self.changed)} unchanged"
        )
        if self.replaced:
            # Names read from the files: shown escaped, never as terminal control codes.
            shown = ", ".join(name.encode("unicode_escape").decode() for name in self.replaced)
            text += f"; replaced signatures by {shown}"
        return text


def check_algorithm(algorithm: str, what: str = "--algorithm") -> Algorithm:
    if algorithm == "sha1":
        return "sha1"
    if algorithm == "sha256":
        return "sha256"
    raise PackageFormatError(f"{what}: must be sha1 or sha256 (got {algorithm!r})")


def check_key_name(key_name: str, what: str = "--key-name") -> str:
    """The public key's file name, as hosts name it in /etc/apk/keys: one plain name."""
    if (
        not key_name
        or key_name in (".", "..")
        or "/" in key_name
        or not (key_name.isascii() and key_name.isprintable())
        or len(key_name) > MAX_KEY_NAME
    ):
        raise PackageFormatError(
            f"{what}: must be a file name of printable ASCII without '/', at most"
            f" {MAX_KEY_NAME} characters, e.g. acme-app.rsa.pub (got {key_name!r})"
        )
    return key_name


def load_key(private_pem: bytes, what: str = "private key") -> RSAPrivateKey:
    """The RSA private key of a PEM; errors name ``what``, never the bytes."""
    from pakman.keys import load_private

    if not private_pem.strip():
        raise KeyMaterialError(f"{what}: is empty")
    return load_private(private_pem, what)


def _gzip(data: bytes) -> bytes:
    # abuild's `gzip -n -9`: no name, no time.
    return gzip.compress(data, compresslevel=9, mtime=0)


def signature_stream(
    signed: bytes | memoryview,
    private_key: RSAPrivateKey,
    key_name: str,
    algorithm: str = DEFAULT_ALGORITHM,
) -> bytes:
    """The gzipped tar of one ``.SIGN.RSA[256].<key_name>`` entry: the RSA PKCS#1 v1.5
    signature of ``signed`` (a control or index gzip stream, as stored).

    As ``abuild-sign`` writes it: a POSIX tar (a name past 100 bytes is carried in a pax
    ``path`` record, as abuild's ``tar --format=posix`` does; apk-tools reads those and
    GNU long names) with its end-of-archive blocks cut, gzipped."""
    from cryptography.hazmat.primitives.asymmetric import padding

    value = private_key.sign(bytes(signed), padding.PKCS1v15(), _digest(algorithm))
    return _wrap(value, key_name, algorithm)


def _digest(algorithm: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256() if check_algorithm(algorithm) == "sha256" else hashes.SHA1()  # noqa: S303


def _wrap(value: bytes, key_name: str, algorithm: str) -> bytes:
    """The signature stream holding ``value``: fixed owner, mode and time."""
    info = tarfile.TarInfo(PREFIXES[check_algorithm(algorithm)] + check_key_name(key_name))
    info.size, info.mode, info.mtime = len(value), 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(value))
        end = archive.offset
    return _gzip(buffer.getvalue()[:end])


def _made_already(
    signable: _Signable, public: RSAPublicKey, key_name: str, algorithm: str
) -> bytes | None:
    """The stream :func:`signature_stream` would make, from a signature already there
    by this key: a PKCS#1 v1.5 signature that verifies is the only one there is, so a
    re-run costs a verification (fast), not a signing (slow), per file."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    for signature in signable.signatures:
        if (signature.key_name, signature.algorithm) != (key_name, algorithm):
            continue
        try:
            public.verify(signature.value, signable.signed, padding.PKCS1v15(), _digest(algorithm))
        except InvalidSignature:
            continue
        return _wrap(signature.value, key_name, algorithm)
    return None


# --- reading what is there --------------------------------------------------------------


@dataclass(frozen=True)
class _Signable:
    """One file: where its kept bytes start and what the new signature covers."""

    path: Path
    kept_from: int  # the old signature stream's length
    signed: bytes  # the control stream (package) or index stream (index)
    old: bytes  # the old signature stream
    signatures: tuple[apk.Signature, ...]


def _first_stream_length(path: Path) -> int:
    """Bytes of the first gzip stream (the signature), already checked by the reader."""
    inflater = zlib.decompressobj(wbits=31)
    consumed = 0
    with path.open("rb") as handle:
        while not inflater.eof:
            chunk = handle.read(4096)
            if not chunk:
                raise PackageFormatError(f"{path}: truncated: the signature stream never ends")
            inflater.decompress(chunk, apk.MAX_INFLATED)
            consumed += len(chunk)
    return consumed - len(inflater.unused_data)


def _read_package(path: Path) -> tuple[_Signable, apk.Package] | str:
    try:
        package = apk.read_package(path)
        length = _first_stream_length(path)
        with path.open("rb") as handle:
            head = handle.read(length + len(package.control))
    except PackageFormatError as error:
        return str(error).split(": ", 1)[1]
    except OSError as error:
        return f"cannot read: {error.strerror}"
    if head[length:] != package.control:
        return "the signature stream is not followed by the control stream"
    datahash = package.field("datahash")
    if not datahash:
        return "no datahash in .PKGINFO: not a package abuild made"
    if datahash != package.data_sha256:
        return "integrity error: the data stream does not match datahash (truncated or corrupt)"
    signable = _Signable(path, length, package.control, head[:length], package.signatures)
    return signable, package


def _whole_gzip(data: bytes) -> bool:
    inflater = zlib.decompressobj(wbits=31)
    try:
        inflater.decompress(data, apk.MAX_INFLATED + 1)
    except zlib.error:
        return False
    return inflater.eof and not inflater.unused_data and not inflater.unconsumed_tail


def _read_index(path: Path) -> tuple[_Signable, apk.Index] | str:
    try:
        with path.open("rb") as handle:
            data = handle.read(apk.MAX_INFLATED + 1)  # parse_index refuses a larger one
        index = apk.parse_index(data, path)
    except PackageFormatError as error:
        return str(error).split(": ", 1)[1]
    except OSError as error:
        return f"cannot read: {error.strerror}"
    length = len(data) - len(index.signed)
    if not _whole_gzip(index.signed):
        return "truncated: the index stream does not end where the file does"
    return _Signable(path, length, index.signed, data[:length], index.signatures), index


def _check_index(index: apk.Index, packages: Mapping[str, apk.Package | None]) -> list[str]:
    """The index must list exactly the packages beside it, each with its ``C:``: once
    re-signed it vouches for them."""
    problems = []
    listed = set()
    for record in index.records:
        filename = apk.package_filename(record)
        listed.add(filename)
        if filename not in packages:
            problems.append(f"lists {filename}, which is missing")
            continue
        package = packages[filename]
        if package is not None and record.get("C") != package.checksum:
            problems.append(f"{filename}: integrity error: does not match its index entry (C:)")
    unlisted = sorted(name for name, package in packages.items() if package and name not in listed)
    problems += [f"{name} is not in the index" for name in unlisted]
    return problems


# --- writing ----------------------------------------------------------------------------


def _stage(signable: _Signable, stream: bytes) -> Path:
    """A temporary beside the file: the new signature stream, then the kept bytes."""
    path = signable.path
    status = path.stat()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as source:
            out.write(stream)
            source.seek(signable.kept_from)
            kept = os.fstat(source.fileno()).st_size - signable.kept_from
            while kept > 0:
                block = source.read(min(kept, 1024 * 1024))
                if not block:
                    raise OSError(0, "the file shrank while it was being signed")
                out.write(block)
                kept -= len(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, status.st_mode & 0o777)
        if os.geteuid() == 0 and (status.st_uid, status.st_gid) != (0, 0):
            os.chown(temporary, status.st_uid, status.st_gid)  # the build user's stays theirs
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


STAGING_THREADS = 4  # writing and fsync release the GIL: a disk's syncs overlap


def _write(plans: Sequence[tuple[_Signable, bytes]]) -> None:
    """Stage every file, then rename each over its target: a failure while staging (a
    full disk) leaves every file as it was."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from pakman.files import local_error, replace_staged

    futures: list[tuple[Future[Path], Path]] = []
    try:
        with ThreadPoolExecutor(max_workers=STAGING_THREADS) as pool:
            for signable, stream in plans:
                futures.append((pool.submit(_stage, signable, stream), signable.path))
        staged = []
        for future, path in futures:
            try:
                staged.append((future.result(), path))
            except OSError as error:
                raise local_error(path, error) from None
        replace_staged(staged)
    except BaseException:
        for future, _ in futures:
            if future.done() and not future.exception():
                future.result().unlink(missing_ok=True)
        raise
    for folder in sorted({path.parent for _, path in futures}):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # the renames survive a crash
        finally:
            os.close(descriptor)


# --- the tree ---------------------------------------------------------------------------


def sign_tree(
    root: Path,
    private_pem: bytes,
    key_name: str,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    expect: Mapping[str, bytes] | None = None,
    what: str = "private key",
) -> SignReport:
    """Sign (or re-sign) every package and ``APKINDEX.tar.gz`` of the tree at ``root``
    (``<repo>/<arch>/``, as verify takes it) with ``private_pem``, in place.

    Every file is checked first: a file that is not a whole v2 package or index, a package
    whose data does not match its ``datahash``, an index whose entries do not match the
    packages beside it, are refused (nothing is written). With ``expect`` (public PEMs by
    key name, e.g. the build's throwaway key), a file must already be signed by one of them
    or by this key: a signature by any other key is refused. Otherwise whatever signature
    is there is replaced. ``what`` names the key in errors; its bytes never appear.
    """
    algorithm = check_algorithm(algorithm)
    key_name = check_key_name(key_name)
    key = load_key(private_pem, what)
    trusted = _expected(expect, key_name, key) if expect is not None else None
    paths = tree.files(root)
    if not paths:
        raise PackageFormatError(f"{root}: no packages or indexes ({tree.TREE_LAYOUT})")

    folders: dict[Path, list[Path]] = defaultdict(list)
    for path in paths:
        folders[path.parent].append(path)
    format_problems: list[str] = []
    trust_problems: list[str] = []
    signables: list[_Signable] = []

    def refuse(path: Path, problem: str, kinds: list[str]) -> None:
        kinds.append(f"{tree.shown(path)}: {problem}")

    for folder in sorted(folders):
        packages: dict[str, apk.Package | None] = {}
        for path in sorted(p for p in folders[folder] if p.name != tree.INDEX_NAME):
            result = _read_package(path)
            if isinstance(result, str):
                refuse(path, result, format_problems)
                packages[path.name] = None  # reported on its own
                continue
            signables.append(result[0])
            packages[path.name] = result[1]
        index_path = folder / tree.INDEX_NAME
        if index_path in folders[folder]:
            read = _read_index(index_path)
            if isinstance(read, str):
                refuse(index_path, read, format_problems)
            else:
                signables.append(read[0])
                for problem in _check_index(read[1], packages):
                    refuse(index_path, problem, trust_problems)
    if trusted is not None:
        from pakman.verify import check_signature

        for signable in signables:
            untrusted = check_signature(signable.signatures, signable.signed, trusted)
            if untrusted:
                refuse(signable.path, f"{untrusted} (--expect-key)", trust_problems)
    if format_problems:
        raise PackageFormatError(*format_problems, *trust_problems)
    if trust_problems:
        raise VerificationError(*trust_problems)

    plans = []
    replaced: set[str] = set()
    public = key.public_key()
    for signable in sorted(signables, key=lambda s: s.path):
        stream = _made_already(signable, public, key_name, algorithm) or signature_stream(
            signable.signed, key, key_name, algorithm
        )
        if stream != signable.old:
            plans.append((signable, stream))
            replaced |= {s.key_name for s in signable.signatures}
    _write(plans)

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return SignReport(
        key_name=key_name,
        algorithm=algorithm,
        files=tuple(sorted(rel(s.path) for s in signables)),
        changed=tuple(sorted(rel(s.path) for s, _ in plans)),
        replaced=tuple(sorted(replaced - {key_name})),
    )


def _expected(
    expect: Mapping[str, bytes], key_name: str, key: RSAPrivateKey
) -> dict[str, RSAPublicKey]:
    """The keys a file may already be signed by: the expected ones, and this one."""
    from pakman.keys import load_public

    trusted = {
        check_key_name(name, "--expect-key"): load_public(pem, f"--expect-key: {name}")
        for name, pem in expect.items()
    }
    trusted[key_name] = key.public_key()
    return trusted
