"""Prove that packages and indexes are signed by our key and whole, before they ship.

The checks mirror what apk-tools 3 enforces on every host, so a failure here is
a failure users would otherwise meet as "UNTRUSTED signature" or
"v2 package integrity error" at install time.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman import apk, tree
from pakman.digest import Digest
from pakman.errors import PackageFormatError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

INDEX_NAME = tree.INDEX_NAME


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Report:
    """The outcome of verifying a tree: what was checked and every problem found."""

    packages: int = 0
    indexes: int = 0
    problems: list[Problem] = field(default_factory=list)
    # Every file verified, with the digests of the bytes read to verify it: what publish
    # ships and describes, so nothing is read (or trusted) twice.
    digests: dict[Path, Digest] = field(default_factory=dict, repr=False)
    verified: dict[Path, apk.Package] = field(default_factory=dict, repr=False)  # packages
    # Trusted key file by the name it signed as, where it verified only by content.
    signed_as: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and self.packages + self.indexes > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "packages": self.packages,
            "indexes": self.indexes,
            "problems": [{"path": p.path, "problem": p.problem} for p in self.problems],
            "signed_as": dict(self.signed_as),
        }

    @property
    def notes(self) -> list[str]:
        """One line per key file that hosts must install under another name."""
        return [install_note(name, key) for name, key in sorted(self.signed_as.items())]


def _verifies(key: RSAPublicKey, signature: apk.Signature, signed: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    digest = hashes.SHA256() if signature.algorithm == "sha256" else hashes.SHA1()  # noqa: S303
    try:
        key.verify(signature.value, signed, padding.PKCS1v15(), digest)
    except InvalidSignature:
        return False
    return True


def by_content(
    signatures: tuple[apk.Signature, ...], signed: bytes, trusted: Mapping[str, RSAPublicKey]
) -> tuple[str, str] | None:
    """``(name signed as, trusted key file)`` when no trusted key file bears a signature's
    name but one of them verifies it: the same key under another file name."""
    if {s.key_name for s in signatures} & set(trusted):
        return None
    for signature in signatures:
        for name, key in sorted(trusted.items()):
            if _verifies(key, signature, signed):
                return signature.key_name, name
    return None


def check_signature(
    signatures: tuple[apk.Signature, ...], signed: bytes, trusted: Mapping[str, RSAPublicKey]
) -> str | None:
    """None when one signature verifies with a trusted key; otherwise why not.

    A key is found by the signature's name, as apk finds it; when no trusted key file bears
    that name, by its content (:func:`by_content`), so a key file may have any name."""
    for signature in signatures:
        key = trusted.get(signature.key_name)
        if key is None:
            continue
        if _verifies(key, signature, signed):
            return None
        return f"bad signature: does not verify with {signature.key_name}"
    if by_content(signatures, signed, trusted) is not None:
        return None
    names = ", ".join(sorted(s.key_name for s in signatures))
    return (
        f"UNTRUSTED signature: signed with key {names}, and no trusted key"
        f" ({', '.join(sorted(trusted))}) verifies it"
    )


def install_names(
    signed: Mapping[Path, tuple[apk.Signature, ...]],
    content: Mapping[Path, bytes],
    trusted: Mapping[str, RSAPublicKey],
) -> dict[str, str]:
    """Trusted key file by the name it signed as, for each key that verified only by its
    content: hosts must install it in /etc/apk/keys under that name."""
    found: dict[str, str] = {}
    for path, signatures in signed.items():
        if {s.key_name for s in signatures} - set(found):
            match = by_content(signatures, content[path], trusted)
            if match is not None:
                found.setdefault(*match)
    return found


def install_note(signed_as: str, key_file: str) -> str:
    """The one line that says under which name hosts must install a renamed key."""
    return (
        f"warning: key {key_file} verifies packages signed as {signed_as}:"
        f" hosts must install it as /etc/apk/keys/{signed_as}"
    )


def _check_package(
    path: Path, trusted: Mapping[str, RSAPublicKey], digest: bool = False
) -> apk.Package | str:
    try:
        package = apk.read_package(path, digest=digest)
    except PackageFormatError as error:
        return str(error).split(": ", 1)[1]
    problem = check_signature(package.signatures, package.control, trusted)
    if problem:
        return problem
    datahash = package.field("datahash")
    if not datahash:
        return "no datahash in .PKGINFO"
    if datahash != package.data_sha256:
        return "integrity error: the data stream does not match datahash"
    return package


def _check_index(
    path: Path,
    packages: dict[str, apk.Package],
    trusted: Mapping[str, RSAPublicKey],
    signed: dict[Path, tuple[tuple[apk.Signature, ...], bytes]] | None = None,
) -> tuple[list[str], Digest | None]:
    try:
        index = apk.read_index(path)
    except PackageFormatError as error:
        return [str(error).split(": ", 1)[1]], None
    problem = check_signature(index.signatures, index.signed, trusted)
    if problem:
        return [problem], None
    if signed is not None:
        signed[path] = (index.signatures, index.signed)
    try:
        records = index.records  # parsed only now, its signature checked
    except PackageFormatError as error:
        return [str(error).split(": ", 1)[1]], None
    problems = []
    listed = set()
    for record in records:
        filename = apk.package_filename(record)
        listed.add(filename)
        package = packages.get(filename)
        if package is None:
            if (path.parent / filename).exists():
                continue  # the package itself failed and is reported on its own
            problems.append(f"lists {filename}, which is missing")
        elif record.get("C") != package.checksum:
            problems.append(f"{filename}: integrity error: does not match its index entry (C:)")
    for filename in sorted(set(packages) - listed):
        problems.append(f"{filename} is not in the index")
    return problems, index.digest


def arch_problem(package: apk.Package, folder_arch: str) -> str | None:
    """Why a package may not sit in its arch folder, if so: apk on that arch refuses
    ("uninstallable arch") a package that is neither of that arch nor noarch."""
    arch = package.field("arch")
    if arch in (folder_arch, "noarch"):
        return None
    return f"its .PKGINFO arch is {arch or '(none)'}, not {folder_arch} (its folder) or noarch"


FORK_MIN = 64  # packages: below this, a second process costs more than it saves


def _check_packages(
    paths: list[Path], trusted: Mapping[str, RSAPublicKey], workers: int | None, digest: bool
) -> dict[Path, apk.Package | str]:
    """Check every package, on every core.

    Per package the work is a little hashing and a lot of Python (stream splitting, header
    parsing), so threads contend for the GIL and gain nothing. A process with no other
    threads forks once and checks every other package in the child; anywhere else
    (threads running, one core) threads are used.
    """
    cores = workers or os.cpu_count() or 1
    lone = threading.active_count() == 1  # forking beside other threads is not safe
    if len(paths) >= FORK_MIN and cores > 1 and hasattr(os, "fork") and lone:
        return _check_forked(paths, trusted, digest)
    with ThreadPoolExecutor(max_workers=min(4, cores)) as pool:
        checked = pool.map(lambda p: _check_package(p, trusted, digest), paths)
        return dict(zip(paths, checked, strict=True))


def _halves(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Two lists of about the same number of bytes (the work is mostly hashing): each
    file, biggest first, to the lighter one. One big package must not share a process
    with half the small ones while the other process idles."""
    halves: tuple[list[Path], list[Path]] = ([], [])
    sizes = [0, 0]
    by_size = sorted(((_size(p), p) for p in paths), key=lambda pair: -pair[0])
    for size, path in by_size:
        lighter = 0 if sizes[0] <= sizes[1] else 1
        halves[lighter].append(path)
        sizes[lighter] += size + 4096  # a file costs something whatever its size
    return halves


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # reading it reports the problem


def _check_forked(
    paths: list[Path], trusted: Mapping[str, RSAPublicKey], digest: bool
) -> dict[Path, apk.Package | str]:
    mine, theirs = _halves(paths)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: check its half, hand the results over, leave without cleanup
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps([_check_package(p, trusted, digest) for p in theirs]))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    results: dict[Path, apk.Package | str] = {p: _check_package(p, trusted, digest) for p in mine}
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    # Our own child's answer; should it have died, its half is checked here instead.
    handed = pickle.loads(data) if status == 0 and data else None  # noqa: S301
    again = handed or [_check_package(p, trusted, digest) for p in theirs]
    results.update(zip(theirs, again, strict=True))
    return results


def verify_root(root: Path, trusted: Mapping[str, RSAPublicKey]) -> Report:
    """Walk the tree at ``root`` once, then verify it (:func:`verify_tree`)."""
    return verify_tree(root, tree.files(root), trusted)


def verify_tree(
    root: Path,
    files: Sequence[Path],
    trusted: Mapping[str, RSAPublicKey],
    workers: int | None = None,
    *,
    digests: bool = False,
) -> Report:
    """Verify every package and index of ``files`` (one walk of ``root``), folder by folder
    (one per arch), each file read once; with ``digests``, the digests of every file come
    from that read (``Report.digests``), for publishing what was verified."""
    folders: dict[Path, list[Path]] = defaultdict(list)
    for path in files:
        folders[path.parent].append(path)

    report = Report()
    package_paths = sorted(p for paths in folders.values() for p in paths if p.suffix == ".apk")
    results = _check_packages(package_paths, trusted, workers, digests)

    def rel(path: Path) -> str:
        return str(path.relative_to(root))

    signed: dict[Path, tuple[tuple[apk.Signature, ...], bytes]] = {}
    for folder in sorted(folders):
        good: dict[str, apk.Package] = {}
        for path in sorted(p for p in folders[folder] if p.suffix == ".apk"):
            report.packages += 1
            result = results[path]
            if isinstance(result, str):
                report.problems.append(Problem(rel(path), result))
            elif problem := arch_problem(result, folder.name):
                report.problems.append(Problem(rel(path), problem))
            else:
                good[path.name] = result
                report.verified[path] = result
                if result.digest is not None:
                    report.digests[path] = result.digest
        index = folder / INDEX_NAME
        if index in folders[folder]:
            report.indexes += 1
            problems, digest = _check_index(index, good, trusted, signed)
            report.problems.extend(Problem(rel(index), problem) for problem in problems)
            if digest is not None and digests:
                report.digests[index] = digest
        else:
            report.problems.append(Problem(rel(folder), f"no {INDEX_NAME} beside the packages"))
    if not folders:
        report.problems.append(Problem(".", "no packages or indexes found"))
    signed |= {path: (p.signatures, p.control) for path, p in report.verified.items()}
    report.signed_as = install_names(
        {path: pair[0] for path, pair in signed.items()},
        {path: pair[1] for path, pair in signed.items()},
        trusted,
    )
    return report
