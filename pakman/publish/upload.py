"""Carrying a plan out: uploads side by side, big ones in parts, the manifest last, the
stored objects read back before and after it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pakman import tree
from pakman.digest import MULTIPART_THRESHOLD, Digest
from pakman.errors import ConfigError, PublishError
from pakman.publish.archive import ArchiveRead
from pakman.publish.deployment import Deployment
from pakman.publish.plan import (
    Plan,
    Survey,
    archive_key,
    manifest_body,
    plan,
    reconcile,
    survey,
)
from pakman.publish.prefetch import Prefetch
from pakman.storage.objects import Conflict, LocalObject, Staged, Store, bytes_object

T = TypeVar("T")


# Given the total bytes, a context that yields the per-chunk progress callback.
ProgressFactory = Callable[[int], AbstractContextManager[Callable[[int], None] | None]]


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
    # The ETag of each object that this run proved holds the verified bytes: by the
    # SHA-256 storage kept (when the plan was made, or read back), or an answer to its
    # write whose ETag is the MD5 of the verified bytes. The read-backs only look for a
    # change since; an object with no proven ETag is proven again.
    vouched: dict[str, str] = {key: plan.versions[key] for key in plan.skip if key in plan.versions}

    # The objects this run replaced: a write If-None-Match only adds an object where none
    # was, which cannot make any manifest false; a store that gives no ETag (a folder)
    # writes unconditionally.
    replaced: list[str] = []

    def written(local: LocalObject, etag: str | None, proven: bool = False) -> None:
        with lock:
            if not proven and (etag is None or local.key in plan.versions):
                replaced.append(local.key)
            if etag and (proven or etag == local.etag):
                vouched[local.key] = etag

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
            try:
                written(local, store.put(local, progress, only_if=plan.condition(local.key)))
            except Conflict:
                written(local, settle(plan, store, local), proven=True)
                if progress:
                    progress(local.size)
        elif progress:
            progress(local.size)
        record(local)

    objects = (*plan.packages, plan.archive)
    changing = any(o.key not in plan.skip for o in objects) and not dry_run
    manifest_key = plan.deployment.manifest_key
    if (plan.stale_manifest and not dry_run) or changing:
        # Retract the manifest first, even one this run did not see (another publish of the
        # same sha may have written it since): while objects change, the deployment must
        # not look complete.
        store.delete(manifest_key)
        log(f"delete {manifest_key} (stale)")
    manifest_sent = False  # set once the manifest may be in storage
    try:
        _upload_all(plan, store, objects, upload, record, written, concurrency, dry_run, progress)
        body = {
            **manifest_body(plan),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest = bytes_object(manifest_key, json.dumps(body, indent=2, sort_keys=True).encode())
        writing_manifest = manifest_key not in plan.skip and not dry_run
        if writing_manifest:
            # The manifest says what storage holds: read it back first, and again after,
            # in case another publish of this sha changed an object meanwhile.
            confirm_stored(plan, store, vouched)
        manifest_sent = writing_manifest
        if writing_manifest:
            # Not conditional: this run retracted any manifest and every object it lists
            # was just read back; a concurrent publish of this sha writes the same or,
            # if it changed an object, fails its read-back or retracts this one.
            store.check_deadline()
            store.put(manifest)
        record(manifest)
        if writing_manifest:
            confirm_stored(plan, store, vouched)
    except BaseException:
        if replaced or manifest_sent:
            # Every upload of this run has ended here. One may have replaced an object that
            # a concurrent publish of this sha listed in its manifest after this run began:
            # that manifest no longer tells the truth, so it goes too. A run that replaced
            # nothing (its writes added objects, or were refused) leaves it.
            with contextlib.suppress(Exception):
                store.delete(manifest_key)
        raise
    summary.seconds = time.monotonic() - started
    return summary


def _upload_all(
    plan: Plan,
    store: Store,
    objects: tuple[LocalObject, ...],
    upload: Callable[[LocalObject], None],
    record: Callable[[LocalObject], None],
    written: Callable[[LocalObject, str | None, bool], None],
    concurrency: int,
    dry_run: bool,
    progress: Callable[[int], None] | None,
) -> None:
    """Every object not skipped, side by side; returns once all are in, or raises once
    every upload has stopped."""

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
        staged = [
            (local, store.stage(local, pool, progress, only_if=plan.condition(local.key)))
            for local in big
        ]

        def commit(local: LocalObject, upload_staged: Staged) -> None:
            try:
                written(local, upload_staged.commit(), False)
            except Conflict:
                written(local, settle(plan, store, local), True)

        committed = [completing.submit(commit, local, st) for local, st in staged]
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


def settle(plan: Plan, store: Store, local: LocalObject) -> str | None:
    """A conditional write refused: another writer changed the object since the plan.
    Fine if it now holds the verified bytes (a concurrent publish of the same files);
    otherwise nothing was overwritten, and the run stops before any manifest."""
    remote = store.head(local.key)
    if remote is not None and store.matches(local, remote):
        return remote.etag
    raise PublishError(
        f"storage {store.describe()}: another publish of this sha changed {local.key} after"
        " this run read it: not overwritten, no manifest written; re-run to publish one"
        " consistent deployment"
    )


def confirm_stored(plan: Plan, store: Store, vouched: dict[str, str]) -> None:
    """Storage must hold exactly the bytes of every object the manifest will list.

    One listing of the prefix and one HEAD of the archive. An object whose ETag is still
    one this run proved (``vouched``) is unchanged; any other is proven now, by the
    SHA-256 the store kept (one HEAD each), and its ETag vouched for the next read-back.
    A mismatch means another publish of the same sha wrote different bytes, and no
    manifest may claim otherwise.
    """
    remote = store.list(plan.deployment.prefix)
    archived = store.head(plan.archive.key)
    if archived is not None:
        remote[archived.key] = archived

    def unchanged(local: LocalObject) -> bool:
        held = remote.get(local.key)
        if held is None:
            return False
        if held.etag and held.etag == vouched.get(local.key):
            return True
        held = store.head(local.key) or held
        if not store.matches(local, held):
            return False
        if held.etag:
            vouched[local.key] = held.etag
        return True

    differ = [local.key for local in (*plan.packages, plan.archive) if not unchanged(local)]
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
    snapshot: tree.Snapshot,
    digests: Mapping[Path, Digest],
    archive: Path,
    deployment: Deployment,
    store: Store,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    create_bucket: bool = False,
    log: Callable[[str], None] = lambda _: None,
    progress_factory: ProgressFactory | None = None,
    prefetch: Prefetch | None = None,
) -> Summary:
    """Plan, compare with storage, and upload what is missing. Safe to re-run at any point.

    ``digests`` describe the bytes of the snapshot's files read in this run (verified);
    every upload checks that it sends those bytes. The archive must hold exactly them. A
    deadline set on the store stops every request that would start after it.
    ``prefetch``: the archive, and storage unless a bucket is to be created, as read in
    this run beside verification (:mod:`.prefetch`).
    """

    def look() -> Survey | None:
        if not dry_run:
            store.ensure_ready(create_bucket)
        try:
            return survey(store, deployment)
        except PublishError:
            if dry_run and create_bucket:
                return None  # the store does not exist yet: everything would be uploaded
            raise

    fetched = prefetch.result() if prefetch else None
    read = fetched.read if fetched else None
    if fetched is not None and fetched.looked:
        local = plan(snapshot, digests, archive, deployment, read)
        seen = fetched.survey()
    else:
        # The requests that read storage wait on the network while the files hash. Making
        # the client is CPU work in Python, so it comes first rather than beside the
        # hashing. Creating a bucket waits until the files are known to be good.
        store.connect()
        looking = _in_background(look) if not create_bucket else None
        local = plan(snapshot, digests, archive, deployment, read)
        seen = look() if looking is None else looking.result()
    reconciled = local if seen is None else reconcile(local, store, seen)
    total = sum(o.size for o in (*local.packages, local.archive))
    bar = progress_factory(total) if progress_factory else contextlib.nullcontext(None)
    with bar as progress:
        return execute(
            reconciled, store, concurrency=concurrency, dry_run=dry_run, log=log, progress=progress
        )


def look_ahead(
    store: Store,
    deployment: Deployment,
    archive: Path,
    read: Callable[[], ArchiveRead | None],
    dry_run: bool,
) -> Survey:
    """What storage holds, read beside verification (:mod:`.prefetch`): the deployment's
    prefix with the checksums kept, its manifest, and the archive's key once ``read``
    gives its digest. Never creates a bucket."""
    if not dry_run:
        store.ensure_ready(False)
    seen = survey(store, deployment)
    archived = read()
    if archived is None:
        return seen
    key = archive_key(archived.digest.sha256, archive.name)
    return dataclasses.replace(seen, archive_key=key, archive=store.head(key))
