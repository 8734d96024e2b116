"""Publish a packages tree and its archive: idempotent, resumable, manifest last.

Layout (compatible with v8):
- ``deployments/<org>/<slug>/<sha>/<arch>/<file>`` for every package file;
- ``archives/<sha256 of the zip>/packages.zip``: a retry re-uses the same key;
- ``deployments/<org>/<slug>/<sha>/manifest.json``, written last. A reader that
  sees the manifest knows every object it lists is in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pakman import tree
from pakman.errors import ConfigError, PublishError
from pakman.hashcache import HashCache, default_path, fact
from pakman.identity import Identity
from pakman.store import (
    MULTIPART_THRESHOLD,
    LocalObject,
    RemoteObject,
    Store,
    bytes_object,
    hash_file,
)

T = TypeVar("T")
MANIFEST = "manifest.json"
# Given the total bytes, a context that yields the per-chunk progress callback.
ProgressFactory = Callable[[int], AbstractContextManager[Callable[[int], None] | None]]
MANIFEST_FORMAT = 1
COMMIT_SHA = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class Deployment:
    """What is being published: the package identity and the commit it came from."""

    identity: Identity
    sha: str
    ref: str = ""
    key_fingerprint: str | None = None

    def __post_init__(self) -> None:
        # It names a storage prefix and reaches the API's URL path: hex digits only.
        if not COMMIT_SHA.fullmatch(self.sha):
            raise ConfigError(
                f"--sha: must be a commit sha of 7 to 64 hex digits (got {self.sha[:80]!r})"
            )

    @property
    def prefix(self) -> str:
        return f"deployments/{self.identity.organization}/{self.identity.slug}/{self.sha}/"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST


@dataclass(frozen=True)
class Plan:
    """Every object to publish, in commit order, and which of them storage already holds."""

    deployment: Deployment
    packages: tuple[LocalObject, ...]
    archive: LocalObject
    skip: frozenset[str] = frozenset()
    stale_manifest: bool = False  # storage holds a manifest that this publish will replace

    @property
    def archive_path(self) -> str:
        return self.archive.key


@dataclass
class Summary:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    archive_path: str = ""
    manifest: str = ""
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "uploaded": len(self.uploaded),
            "skipped": len(self.skipped),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.bytes / 1e6 / self.seconds, 2) if self.seconds else 0.0,
            "archive_path": self.archive_path,
            "manifest": self.manifest,
            "dry_run": self.dry_run,
            "uploaded_keys": self.uploaded,
        }

    def line(self) -> str:
        d = self.as_dict()
        verb = "would upload" if self.dry_run else "uploaded"
        return (
            f"{verb} {d['uploaded']} object(s), skipped {d['skipped']}, "
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.2f} s ({d['mb_per_s']} MB/s)"
        )


def package_files(packages_dir: Path) -> dict[str, Path]:
    """``<arch>/<file>`` -> path, for every file of a ``<repo>/<arch>/<file>`` tree."""
    return tree.packages_tree(packages_dir)


def check_archive(archive: Path, packages: tuple[LocalObject, ...]) -> None:
    """The archive must hold exactly the packages tree, so a stale or forged zip never ships.

    Every entry must be ``<repo>/<arch>/<file>`` (no absolute or ``..`` names, no
    duplicates, nothing but package files), match its tree file's size and CRC-32, and
    its stored bytes must really have that CRC: the central directory alone is not trusted.
    """
    expected = {"/".join(o.key.split("/")[-2:]): o for o in packages}
    problems: list[str] = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            seen: dict[str, str] = {}
            for info in zipped.infolist():
                name = info.filename
                parts = name.split("/")
                if info.is_dir() and len(parts) <= 4 and ".." not in parts and name[:1] != "/":
                    continue
                if (
                    name.startswith("/")
                    or "\\" in name
                    or ".." in parts
                    or len(parts) != 3
                    or not tree.is_package_file(parts[-1])
                ):
                    problems.append(
                        f"{archive}: unexpected entry {name!r} (not {tree.TREE_LAYOUT})"
                    )
                    continue
                key = "/".join(parts[-2:])
                if key in seen:
                    problems.append(f"{archive}: {key} twice ({seen[key]!r} and {name!r})")
                    continue
                seen[key] = name
                local = expected.get(key)
                if local is None:
                    problems.append(f"{archive}: has {name}, not in the packages tree")
                elif info.file_size != local.size or local.crc32 != info.CRC:
                    problems.append(f"{archive}: {name} differs from {local.path}")
                elif not _stored_crc_matches(zipped, info):
                    problems.append(f"{archive}: {name} is corrupt (its bytes fail their CRC)")
            problems += [f"{archive}: lacks {key}" for key in sorted(set(expected) - set(seen))]
    except (OSError, zipfile.BadZipFile, zlib.error) as error:
        raise ConfigError(f"{archive}: not a readable zip ({error.__class__.__name__})") from None
    if problems:
        raise ConfigError(*problems, "rebuild the archive with 'pakman merge'")


def _stored_crc_matches(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Read the entry's bytes: zipfile checks them against its CRC at the end."""
    try:
        with zipped.open(info) as member:
            while member.read(1 << 20):
                pass
    except zipfile.BadZipFile:
        return False
    return True


def plan(
    packages_dir: Path,
    archive: Path,
    deployment: Deployment,
    *,
    workers: int = 4,
    cache: HashCache | None = None,
) -> Plan:
    """Hash every file once and lay out the object keys (no storage access)."""
    files = package_files(packages_dir)
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive (make it with 'pakman merge')")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # hashlib releases the GIL: the archive and the packages hash side by side.
        hashing = pool.submit(hash_file, archive, archive.name, cache)
        packages = tuple(
            pool.map(
                lambda item: hash_file(item[1], deployment.prefix + item[0], cache), files.items()
            )
        )
        hashed = hashing.result()
    # An archive proved to hold exactly this tree, both unchanged since, is not read again.
    proved, newest = fact("archive", [archive, *files.values()])
    if cache is None or not cache.remembers(proved):
        check_archive(archive, packages)
        if cache is not None:
            cache.remember(proved, newest)
    archived = dataclasses.replace(hashed, key=f"archives/{hashed.sha256}/{archive.name}")
    return Plan(deployment, packages, archived)


def manifest_body(plan: Plan) -> dict[str, Any]:
    """The manifest without its timestamp: what decides whether it must be rewritten."""
    d = plan.deployment
    return {
        "format": MANIFEST_FORMAT,
        "repository": d.identity.repository,
        "organization": d.identity.organization,
        "package": d.identity.slug,
        "sha": d.sha,
        "ref": d.ref,
        "build": d.identity.build,
        "key_fingerprint": d.key_fingerprint,
        "archive": {
            "key": plan.archive.key,
            "size": plan.archive.size,
            "sha256": plan.archive.sha256,
        },
        "objects": [{"key": o.key, "size": o.size, "sha256": o.sha256} for o in plan.packages],
    }


def _existing_manifest(store: Store, key: str) -> dict[str, Any] | None:
    raw = store.get(key)
    if raw is None:
        return None
    try:
        existing = json.loads(raw)
    except ValueError:
        return None
    return existing if isinstance(existing, dict) else None


@dataclass(frozen=True)
class Survey:
    """What storage holds for a deployment: one listing of its prefix, and its manifest."""

    objects: dict[str, RemoteObject]
    manifest: dict[str, Any] | None


def survey(store: Store, deployment: Deployment) -> Survey:
    """Read what storage holds; it needs no hashes, so it can run while files hash."""
    return Survey(store.list(deployment.prefix), _existing_manifest(store, deployment.manifest_key))


def _matching(plan: Plan, store: Store, listed: dict[str, RemoteObject]) -> set[str]:
    """The keys of the plan's objects that storage holds with the same bytes: ``listed``
    (the deployment's prefix) and one HEAD of the archive, which lives elsewhere."""
    remote = dict(listed)
    archived = store.head(plan.archive.key)
    if archived is not None:
        remote[archived.key] = archived
    return {
        local.key
        for local in (*plan.packages, plan.archive)
        if local.key in remote and store.matches(local, remote[local.key])
    }


def reconcile(plan: Plan, store: Store, seen: Survey) -> Plan:
    """Skip every object whose size and checksum already match what storage holds."""
    skip = _matching(plan, store, seen.objects)
    existing = None if seen.manifest is None else dict(seen.manifest)
    stale = False
    if existing is not None:
        existing.pop("created_at", None)
        complete = len(skip) == len(plan.packages) + 1
        if complete and existing == manifest_body(plan):
            skip.add(plan.deployment.manifest_key)
        else:
            stale = True  # retracted before anything changes, rewritten last
    return dataclasses.replace(plan, skip=frozenset(skip), stale_manifest=stale)


def execute(
    plan: Plan,
    store: Store,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _: None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Upload what is missing, then the manifest, last, once everything is in place.

    Big objects (the archive, big packages) go up in parts alongside the small ones and
    complete after them.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency: must be at least 1 (got {concurrency})")
    started = time.monotonic()
    summary = Summary(
        archive_path=plan.archive.key, manifest=plan.deployment.manifest_key, dry_run=dry_run
    )
    lock = threading.Lock()

    def record(local: LocalObject) -> None:
        skipped = local.key in plan.skip
        with lock:
            if skipped:
                summary.skipped.append(local.key)
            else:
                summary.uploaded.append(local.key)
                summary.bytes += local.size
        verb = "skip" if skipped else "plan" if dry_run else "put"
        log(f"{verb:<6} {local.key} ({local.size} bytes)")

    def upload(local: LocalObject, progress: Callable[[int], None] | None = progress) -> None:
        if local.key not in plan.skip and not dry_run:
            store.check_deadline()
            store.put(local, progress)
        elif progress:
            progress(local.size)
        record(local)

    objects = (*plan.packages, plan.archive)
    changing = any(o.key not in plan.skip for o in objects)
    if (plan.stale_manifest or changing) and not dry_run:
        # Retract the manifest first, even one this run did not see (another publish of the
        # same sha may have written it since): while objects change, the deployment must
        # not look complete.
        store.delete(plan.deployment.manifest_key)
        log(f"delete {plan.deployment.manifest_key} (stale)")

    def pending(local: LocalObject) -> bool:
        return local.key not in plan.skip and not dry_run

    # Big objects go up in parts spread over the pool, queued first because they take
    # longest; each multipart upload completes as soon as its own parts are in, beside the
    # small uploads. Objects may become visible in any order: the archive's key names its
    # content, and only the manifest, written last, says the deployment is whole.
    big = [p for p in plan.packages if p.size >= MULTIPART_THRESHOLD and pending(p)]
    if pending(plan.archive):
        big.append(plan.archive)
    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        ThreadPoolExecutor(max_workers=max(1, len(big))) as completing,
    ):
        staged = [(local, store.stage(local, pool, progress)) for local in big]
        committed = [completing.submit(st.commit) for _, st in staged]
        small = [pool.submit(upload, local) for local in objects if local not in big]
        try:
            wait([*small, *committed], return_when=FIRST_EXCEPTION)
            for future in (*small, *committed):
                future.result()  # the first failure stops here, before the manifest
        except BaseException:
            for future in small:
                future.cancel()
            for _, upload_staged in staged:
                upload_staged.abort()
            raise
        for local, _ in staged:
            record(local)
    manifest_key = plan.deployment.manifest_key
    body = {**manifest_body(plan), "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    manifest = bytes_object(manifest_key, json.dumps(body, indent=2, sort_keys=True).encode())
    writing_manifest = manifest_key not in plan.skip and not dry_run
    if writing_manifest:
        # The manifest says what storage holds: read it back first, and again after, in
        # case another publish of this sha changed an object meanwhile.
        confirm_stored(plan, store)
    upload(manifest, progress=None)  # not part of the total the progress bar shows
    if writing_manifest:
        try:
            confirm_stored(plan, store)
        except PublishError:
            store.delete(manifest_key)
            raise
    summary.seconds = time.monotonic() - started
    return summary


def confirm_stored(plan: Plan, store: Store) -> None:
    """Storage must hold exactly the bytes of every object the manifest will list.

    One listing of the prefix and one HEAD of the archive; a mismatch means another
    publish of the same sha wrote different bytes, and no manifest may claim otherwise.
    """
    held = _matching(plan, store, store.list(plan.deployment.prefix))
    differ = [local.key for local in (*plan.packages, plan.archive) if local.key not in held]
    if differ:
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        raise PublishError(
            f"storage {store.describe()}: {differ[0]}{more} does not hold the bytes this run"
            " uploaded: another publish of this sha changed it meanwhile; no manifest was"
            " written, re-run to publish one consistent deployment"
        )


def _in_background(work: Callable[[], T]) -> Future[T]:
    """Run ``work`` on a daemon thread: a run that fails locally first does not wait for it."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # handed to the thread that waits
            future.set_exception(error)

    threading.Thread(target=run, daemon=True).start()
    return future


def publish(
    packages_dir: Path,
    archive: Path,
    deployment: Deployment,
    store: Store,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    create_bucket: bool = False,
    cache: HashCache | None = None,
    log: Callable[[str], None] = lambda _: None,
    progress_factory: ProgressFactory | None = None,
) -> Summary:
    """Plan, compare with storage, and upload what is missing. Safe to re-run at any point.

    The archive must hold exactly the packages tree. A deadline set on the store stops
    every request that would start after it.
    """
    workers = min(4, os.cpu_count() or 1)
    cache = cache or HashCache(default_path())

    def look() -> Survey | None:
        if not dry_run:
            store.ensure_ready(create_bucket)
        try:
            return survey(store, deployment)
        except PublishError:
            if dry_run and create_bucket:
                return None  # the store does not exist yet: everything would be uploaded
            raise

    # The requests that read storage wait on the network while the files hash. Making the
    # client is CPU work in Python, so it comes first rather than beside the hashing.
    # Creating a bucket waits until the files are known to be good.
    store.connect()
    looking = _in_background(look) if not create_bucket else None
    local = plan(packages_dir, archive, deployment, workers=workers, cache=cache)
    cache.save()
    seen = look() if looking is None else looking.result()
    reconciled = local if seen is None else reconcile(local, store, seen)
    total = sum(o.size for o in (*local.packages, local.archive))
    bar = progress_factory(total) if progress_factory else contextlib.nullcontext(None)
    with bar as progress:
        return execute(
            reconciled, store, concurrency=concurrency, dry_run=dry_run, log=log, progress=progress
        )
