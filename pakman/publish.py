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
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pakman.errors import ConfigError, PublishError
from pakman.hashcache import HashCache, default_path
from pakman.identity import Identity
from pakman.store import LocalObject, Store, bytes_object, hash_file

MANIFEST = "manifest.json"
# Given the total bytes, a context that yields the per-chunk progress callback.
ProgressFactory = Callable[[int], AbstractContextManager[Callable[[int], None] | None]]
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Deployment:
    """What is being published: the package identity and the commit it came from."""

    identity: Identity
    sha: str
    ref: str = ""
    key_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if not self.sha or "/" in self.sha or self.sha in (".", ".."):
            raise ConfigError(f"--sha: a commit sha is required (got {self.sha!r})")

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
    if not packages_dir.is_dir():
        raise ConfigError(f"{packages_dir}: no such directory")
    found: dict[str, Path] = {}
    problems = []
    for path in sorted(packages_dir.rglob("*")):
        if not path.is_file() or any(
            p.startswith(".") for p in path.relative_to(packages_dir).parts
        ):
            continue
        parts = path.relative_to(packages_dir).parts
        if len(parts) != 3:
            problems.append(f"{path}: not at <repo>/<arch>/<file>")
            continue
        name = "/".join(parts[-2:])
        if name in found:
            problems.append(f"{name}: in two repositories: {found[name]} and {path}")
        found[name] = path
    if problems:
        raise ConfigError(*problems)
    if not found:
        raise ConfigError(f"{packages_dir}: no package files")
    return found


def check_archive(archive: Path, files: dict[str, Path]) -> None:
    """The archive must hold exactly the packages tree, so a stale zip never ships."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = {
                "/".join(i.filename.split("/")[-2:]): i for i in zipped.infolist() if not i.is_dir()
            }
    except (OSError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{archive}: not a readable zip ({error.__class__.__name__})") from None
    problems = [f"{archive}: lacks {n}" for n in sorted(set(files) - set(entries))]
    problems += [
        f"{archive}: has {n}, not in the packages tree" for n in sorted(set(entries) - set(files))
    ]
    for name in sorted(set(files) & set(entries)):
        info, path = entries[name], files[name]
        if info.file_size != path.stat().st_size or zlib.crc32(path.read_bytes()) != info.CRC:
            problems.append(f"{archive}: {name} differs from {path}")
    if problems:
        raise ConfigError(*problems, "rebuild the archive with 'pakman merge'")


def plan(
    packages_dir: Path,
    archive: Path,
    deployment: Deployment,
    *,
    workers: int = 4,
    verify: bool = True,
    cache: HashCache | None = None,
) -> Plan:
    """Hash every file once and lay out the object keys (no storage access)."""
    files = package_files(packages_dir)
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive (make it with 'pakman merge')")
    if verify:
        check_archive(archive, files)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # hashlib releases the GIL: the archive and the packages hash side by side.
        hashing = pool.submit(hash_file, archive, archive.name, cache)
        packages = tuple(
            pool.map(
                lambda item: hash_file(item[1], deployment.prefix + item[0], cache), files.items()
            )
        )
        hashed = hashing.result()
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


def reconcile(plan: Plan, store: Store) -> Plan:
    """One listing per prefix: skip every object whose size and checksum already match."""
    remote = store.list(plan.deployment.prefix)
    archived = store.head(plan.archive.key)
    if archived is not None:
        remote[archived.key] = archived
    skip = {
        local.key
        for local in (*plan.packages, plan.archive)
        if local.key in remote and store.matches(local, remote[local.key])
    }
    existing = _existing_manifest(store, plan.deployment.manifest_key)
    stale = False
    if existing is not None:
        existing.pop("created_at", None)
        if existing == manifest_body(plan):
            skip.add(plan.deployment.manifest_key)
        else:
            stale = True
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
    """Upload what is missing: packages, then the archive, then the manifest.

    The archive's parts travel alongside the packages, but its upload completes, and
    so becomes visible, only after every package is in place.
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
            store.put(local, progress)
        elif progress:
            progress(local.size)
        record(local)

    if plan.stale_manifest and not dry_run:
        # Retract the old manifest first: while objects change, the deployment must not
        # look complete.
        store.delete(plan.deployment.manifest_key)
        log(f"delete {plan.deployment.manifest_key} (stale)")
    archive_pending = plan.archive.key not in plan.skip and not dry_run
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        packages = [pool.submit(upload, local) for local in plan.packages]
        staged = store.stage(plan.archive, pool, progress) if archive_pending else None
        try:
            for future in packages:
                future.result()  # the first failure stops here: nothing after it commits
        except BaseException:
            for future in packages:
                future.cancel()
            if staged:
                staged.abort()
            raise
        if staged:
            staged.commit()
        elif progress and plan.archive.key in plan.skip:
            progress(plan.archive.size)
        record(plan.archive)
    manifest_key = plan.deployment.manifest_key
    body = {**manifest_body(plan), "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    manifest = bytes_object(manifest_key, json.dumps(body, indent=2, sort_keys=True).encode())
    upload(manifest, progress=None)  # not part of the total the progress bar shows
    summary.seconds = time.monotonic() - started
    return summary


def publish(
    packages_dir: Path,
    archive: Path,
    deployment: Deployment,
    store: Store,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    create_bucket: bool = False,
    verify: bool = True,
    log: Callable[[str], None] = lambda _: None,
    progress_factory: ProgressFactory | None = None,
) -> Summary:
    """Plan, compare with storage, and upload what is missing. Safe to re-run at any point.

    ``verify`` checks that the archive holds exactly the packages tree.
    """
    workers = min(4, os.cpu_count() or 1)
    cache = HashCache(default_path())
    local = plan(packages_dir, archive, deployment, workers=workers, verify=verify, cache=cache)
    cache.save()
    if not dry_run:
        store.ensure_ready(create_bucket)
    try:
        reconciled = reconcile(local, store)
    except PublishError:
        if dry_run and create_bucket:
            reconciled = local  # the store does not exist yet: everything would be uploaded
        else:
            raise
    total = sum(o.size for o in (*local.packages, local.archive))
    bar = progress_factory(total) if progress_factory else contextlib.nullcontext(None)
    with bar as progress:
        return execute(
            reconciled, store, concurrency=concurrency, dry_run=dry_run, log=log, progress=progress
        )
