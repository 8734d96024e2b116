"""``pakman repo check URL``: read a repository over HTTP(S) the way apk does and report
every problem a host would meet, and the cache headers a CDN would act on.

Per arch: ``<URL>/<arch>/APKINDEX.tar.gz``, its signature against the given keys, then
every package it lists, fetched and checked against its record as apk checks it (``C:``,
the SHA-1 of the control stream, and ``S:``, the size). Bodies stream with caps: an index
is never read past :data:`pakman.apk.MAX_INFLATED`, a package never past its ``S:``.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman import apk
from pakman.errors import ConfigError, PackageFormatError, PublishError
from pakman.storage.objects import redact_url

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

INDEX_MAX_AGE = 300  # seconds a host or CDN may keep an index without asking again
CHUNK = 1024 * 1024


@dataclass
class CheckReport:
    url: str
    packages: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "packages": self.packages, "problems": list(self.problems)}


def index_cache_problem(header: str | None) -> str | None:
    """Why an index's Cache-Control lets hosts or CDNs keep a stale index, if it does."""
    value = (header or "").lower()
    if "no-cache" in value or "no-store" in value:
        return None
    found = re.search(r"(?:s-)?max-age=(\d+)", value)
    if found and all(int(n) <= INDEX_MAX_AGE for n in re.findall(r"max-age=(\d+)", value)):
        return None
    return (
        f"served with Cache-Control {header!r}: a CDN may keep a stale index;"
        f" serve it with no-cache (or max-age of at most {INDEX_MAX_AGE})"
    )


def package_cache_problem(header: str | None) -> str | None:
    value = (header or "").lower()
    if "immutable" in value or re.search(r"max-age=\d{5,}", value):
        return None
    return (
        f"served with Cache-Control {header!r}: a package file never changes;"
        " serve it as immutable (public, max-age=31536000, immutable)"
    )


READ_TIMEOUT = 60.0  # seconds a read may make no progress


class _Client:
    """GETs that start only before ``deadline`` (time.monotonic()), each bounded by what is
    left of it; a read stuck past it is the watchdog's (``pakman repo check`` arms it)."""

    def __init__(self, deadline: float, verify_tls: bool) -> None:
        import urllib3

        self.deadline = deadline
        self.pool = urllib3.PoolManager(
            retries=urllib3.Retry(total=3, backoff_factor=0.2, redirect=3),
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
        )

    def get(self, url: str) -> Any:
        import urllib3

        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PublishError("repo check: gave up: the run passed its deadline (--timeout)")
        timeout = urllib3.Timeout(connect=min(10.0, left), read=min(READ_TIMEOUT, left))
        try:
            return self.pool.request("GET", url, preload_content=False, timeout=timeout)
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            return f"cannot fetch: {reason}"


def check(
    url: str,
    arches: Sequence[str],
    trusted: Mapping[str, RSAPublicKey],
    *,
    timeout: float,
    verify_tls: bool = True,
) -> CheckReport:
    """Every problem of the repository at ``url`` (a line of /etc/apk/repositories); no
    request starts more than ``timeout`` seconds after the call."""
    from pakman.verify import check_signature

    if not re.match(r"https?://[^/]", url):
        raise ConfigError(f"URL: must be an http(s) URL (got {url!r})")
    base = url.rstrip("/")
    report = CheckReport(base)
    client = _Client(time.monotonic() + timeout, verify_tls)
    for arch in arches:
        where = f"{base}/{arch}/APKINDEX.tar.gz"
        answer = client.get(where)
        if isinstance(answer, str):
            report.problems.append(f"{where}: {answer}")
            continue
        with answer:
            if answer.status != 200:
                report.problems.append(f"{where}: HTTP {answer.status}")
                continue
            data = _read_capped(answer, apk.MAX_INFLATED)
            cache = answer.headers.get("Cache-Control")
        if data is None:
            report.problems.append(f"{where}: larger than an index can be")
            continue
        if (problem := index_cache_problem(cache)) is not None:
            report.problems.append(f"{where}: {problem}")
        try:
            index = apk.parse_index(data, Path(where))
        except PackageFormatError as error:
            report.problems.append(str(error))
            continue
        if (problem := check_signature(index.signatures, index.signed, trusted)) is not None:
            report.problems.append(f"{where}: {problem}")
            continue  # records apk would never read
        try:
            records = index.records
        except PackageFormatError as error:
            report.problems.append(str(error))
            continue
        for record in records:
            report.packages += 1
            name = apk.package_filename(record)
            report.problems += _check_package(client, f"{base}/{arch}/{name}", record)
    # A user:password@ in the URL (apk reads private repositories so) is never printed.
    shown = redact_url(base)
    report.problems = [problem.replace(base, shown) for problem in report.problems]
    report.url = shown
    return report


def _read_capped(answer: Any, limit: int) -> bytes | None:
    """The body, or None once it runs past ``limit`` (never held past it)."""
    chunks, got = [], 0
    while chunk := answer.read(CHUNK, decode_content=False):
        got += len(chunk)
        if got > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _check_package(client: _Client, where: str, record: Mapping[str, str]) -> list[str]:
    size = int(record.get("S", "0") or 0)
    answer = client.get(where)
    if isinstance(answer, str):
        return [f"{where}: listed in the index, but {answer}"]
    problems = []
    with answer, tempfile.TemporaryDirectory(prefix="pakman-check-") as tmp:
        if answer.status != 200:
            return [f"{where}: listed in the index, but HTTP {answer.status}"]
        if (problem := package_cache_problem(answer.headers.get("Cache-Control"))) is not None:
            problems.append(f"{where}: {problem}")
        path = Path(tmp) / "package.apk"
        got = 0
        with path.open("wb") as out:
            while chunk := answer.read(CHUNK, decode_content=False):
                got += len(chunk)
                if got > size:
                    break  # never more than the index vouches for
                out.write(chunk)
        if got != size:
            more = "more than" if got > size else f"{got}, not"
            return [*problems, f"{where}: {more} the {size} bytes the index lists (S:)"]
        try:
            package = apk.read_package(path)
        except PackageFormatError as error:
            return [*problems, f"{where}: {str(error).split(': ', 1)[-1]}"]
        if package.field("datahash") != package.data_sha256:
            problems.append(f"{where}: its data stream does not match its datahash")
        if package.checksum != record.get("C"):
            problems.append(
                f"{where}: its bytes are not those the index lists (C: {record.get('C')},"
                f" the file's {package.checksum}): apk refuses it (integrity error)"
            )
    return problems
