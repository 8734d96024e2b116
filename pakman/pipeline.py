"""The steps the CLI and the Dagger module share: check, verify, merge, publish, push, repo.

Each front end resolves its arguments once (the CLI also reads the environment) into the
frozen option objects that live beside what they configure (:class:`~pakman.trust.Trust`,
:class:`~pakman.storage.options.StoreOptions`, :class:`~pakman.publish.plan.Deployment`,
:class:`~pakman.publish.instellar.InstellarOptions`), then calls these steps. The
verification policy and the order of checks therefore live here only, and the front ends
cannot drift apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pakman import files
from pakman.errors import ConfigError, VerificationError
from pakman.storage.options import (
    DEFAULT_CONCURRENCY,
    StoreOptions,
    check_concurrency,
    open_checked,
)

if TYPE_CHECKING:
    from pakman.apk import Package
    from pakman.config import Config
    from pakman.digest import Digest
    from pakman.merge import Merged
    from pakman.publish.archive import ArchiveRead
    from pakman.publish.deploy import Pushed
    from pakman.publish.deployment import Deployment
    from pakman.publish.instellar import InstellarOptions
    from pakman.publish.plan import Survey
    from pakman.publish.prefetch import Look, Prefetch
    from pakman.publish.upload import ProgressFactory, Summary
    from pakman.repo.repository import Summary as RepoSummary
    from pakman.tree import Snapshot
    from pakman.trust import Trust

Log = Callable[[str], None]
DEFAULT_TIMEOUT = 30 * 60  # seconds for a whole publish or push


def _quiet(_: str) -> None:
    pass


# --- checking a config ------------------------------------------------------------------


def check_summary(cfg: Config, name: str) -> str:
    """What ``check`` reports for a valid config: one line, then one per warning."""
    notes = "".join(f"\nwarning: {w}" for w in cfg.warnings)
    return f"{name}: ok ({cfg.type} package, {len(cfg.architectures)} arch){notes}"


# --- verify ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """What verification proved, in this run: the signing key's fingerprint (None when not
    verified) and the digests of the very bytes it read, file by file."""

    fingerprint: str | None
    digests: Mapping[Path, Digest] = field(default_factory=dict)
    packages: Mapping[Path, Package] = field(default_factory=dict)  # as verification read them
    signed_as: Mapping[str, str] = field(default_factory=dict)  # key file by its signing name


def verify(
    tree: Path,
    files: Sequence[Path],
    trust: Trust,
    what: str,
    log: Log = _quiet,
    *,
    digests: bool = False,
) -> Verified:
    """Verify every package and index of ``files`` (one walk of ``tree``), reading each
    once; nothing proved in an earlier run is trusted. With ``digests`` (what is shipped),
    the digests of the bytes verified come from that same read.

    Raises :class:`VerificationError` listing every problem, so nothing unverified goes on.
    """
    if trust.skip:
        return Verified(None)
    trust.check()
    if not trust.keys:
        log(
            "warning: no public key (--key, ABUILD_PUBLIC_KEY or ~/.abuild/): packages not verified"
        )
        return Verified(None)
    from pakman.verify import verify_tree

    report = verify_tree(tree, files, trust.public, digests=digests)
    if not report.ok:
        raise VerificationError(
            *(str(problem) for problem in report.problems),
            f"{what} refused: verification failed ({len(report.problems)} problem(s))",
        )
    for note in report.notes:
        log(note)
    return Verified(trust.fingerprint, report.digests, report.verified, report.signed_as)


# --- merge ----------------------------------------------------------------------------


def merge(
    inputs: Sequence[Path],
    output: Path,
    trust: Trust,
    *,
    packages_dir: Path | None = None,
    log: Log = _quiet,
) -> tuple[Merged, str]:
    """Merge per-arch outputs, verify the merged tree, then write the zip; its sha256."""
    import tempfile

    from pakman import merge as merge_module
    from pakman.tree import files as tree_files

    files.check_writable(output, "--output")
    if packages_dir is not None:
        files.check_writable(packages_dir, "--packages-dir", folder=True)
    merged = merge_module.collect(list(inputs))
    with tempfile.TemporaryDirectory(prefix="pakman-merge-") as tmp:
        tree = packages_dir or Path(tmp)
        if packages_dir is not None or not trust.skip:
            merge_module.write_tree(merged, tree)
        # The merged tree is what ships: the index beside each package is checked there.
        verify(tree, tree_files(tree), trust, "merge", log)
    return merged, merge_module.write_zip(merged, output)


# --- publish and push -----------------------------------------------------------------


def check_timeout(seconds: float) -> float:
    if not 0 < seconds <= 7 * 24 * 3600:
        raise ConfigError(f"--timeout: must be 1 second to 7 days (got {seconds})")
    return seconds


@dataclass(frozen=True)
class _Ready:
    """What publish and push both start from: one walk of the tree, the digests of the
    bytes verified (or, unverified, read once), and the archive to ship."""

    target: Deployment  # with the signing key's fingerprint
    snapshot: Snapshot
    digests: Mapping[Path, Digest]
    archive: Path
    deadline: float  # time.monotonic() after which no request starts
    prefetch: Prefetch | None = None  # the archive (and storage) read beside verification


@contextlib.contextmanager
def _shipping(
    tree: Path,
    archive: Path | None,
    target: Deployment,
    trust: Trust,
    what: str,
    timeout: float,
    log: Log,
    look: Look | None = None,
    *,
    read_ahead: bool = False,
) -> Iterator[_Ready]:
    from pakman import merge as merge_module
    from pakman.digest import digest_file
    from pakman.publish.prefetch import Prefetch
    from pakman.tree import snapshot

    deadline = time.monotonic() + check_timeout(timeout)
    trust.check()
    walked = snapshot(tree)
    # A given archive, and with ``look`` storage, are read while the packages are verified
    # (a made archive, after).
    given = archive is not None and archive.is_file()
    reading = Prefetch(archive, look) if read_ahead and archive is not None and given else None
    try:
        verified = verify(tree, walked.paths, trust, what, log, digests=True)
        digests = {path: verified.digests.get(path) or digest_file(path) for path in walked.paths}
        with merge_module.archive_for(walked, archive, log) as zip_path:
            yield _Ready(
                dataclasses.replace(target, key_fingerprint=verified.fingerprint),
                walked,
                digests,
                zip_path,
                deadline,
                reading,
            )
    finally:
        if reading:
            reading.close()


def publish(
    tree: Path,
    archive: Path | None,
    target: Deployment,
    trust: Trust,
    store: StoreOptions,
    *,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    log: Log = _quiet,
    progress_factory: ProgressFactory | None = None,
) -> Summary:
    """Verify, then upload packages and archive to ``store``, manifest last.

    No request starts more than ``timeout`` seconds after the call.
    """
    from pakman.publish import upload
    from pakman.publish.upload import look_ahead

    opened = open_checked(store)
    files.check_readable(archive, "--archive")
    opened.deadline = time.monotonic() + check_timeout(timeout)  # also in the look ahead

    def look(read: Callable[[], ArchiveRead | None]) -> Survey:
        assert archive is not None  # only a given archive is read ahead
        return look_ahead(opened, target, archive, read, dry_run)

    # Creating a bucket waits until the files are known to be good.
    ahead = None if store.create_bucket else look
    with _shipping(
        tree, archive, target, trust, "publish", timeout, log, ahead, read_ahead=True
    ) as ready:
        opened.deadline = ready.deadline
        return upload.publish(
            ready.snapshot,
            ready.digests,
            ready.archive,
            ready.target,
            opened,
            concurrency=store.concurrency,
            dry_run=dry_run,
            create_bucket=store.create_bucket,
            log=log,
            progress_factory=progress_factory,
            prefetch=ready.prefetch,
        )


def push(
    tree: Path,
    archive: Path | None,
    target: Deployment,
    trust: Trust,
    cfg: Config,
    instellar: InstellarOptions,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    log: Log = _quiet,
    progress_factory: ProgressFactory | None = None,
) -> Pushed:
    """Verify, upload to Instellar-provided storage and register the deployment (v8's push).

    No request starts more than ``timeout`` seconds after the call.
    """
    from pakman.publish.deploy import push as push_deployment
    from pakman.publish.instellar import Client

    client = Client(instellar.endpoint, instellar.auth_token, instellar.package_token)
    with _shipping(tree, archive, target, trust, "push", timeout, log) as ready:
        return push_deployment(
            client,
            cfg,
            ready.target,
            ready.snapshot,
            ready.digests,
            ready.archive,
            concurrency=check_concurrency(concurrency),
            deadline=ready.deadline,
            log=log,
            progress_factory=progress_factory,
        )


# --- repo: a signed apk repository ---------------------------------------------------


def repo(
    inputs: Sequence[Path],
    trust: Trust,
    private_pem: bytes,
    store: StoreOptions,
    *,
    branch: str,
    prefix: str = "alpine",
    keep: int = 5,
    replace: bool = False,
    dry_run: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    grace: float | None = None,
    log: Log = _quiet,
) -> RepoSummary:
    """Verify the packages of ``inputs`` with the one key of ``trust``, then add them to the
    signed apk repository in ``store`` (:mod:`pakman.repo.repository`), signing its index
    with the private key, which must be the pair of that key."""
    from pakman.errors import KeyMaterialError
    from pakman.repo import repository
    from pakman.sign import load_key
    from pakman.tree import snapshot

    repository.check_prefix(prefix)
    deadline = time.monotonic() + check_timeout(timeout)
    ((key_file, pem),) = trust.keys.items()
    public = trust.public[key_file]
    private = load_key(private_pem, "--private-key")
    if private.public_key().public_numbers() != public.public_numbers():
        raise KeyMaterialError("--key: does not match --private-key")
    opened = open_checked(store)
    walked = [snapshot(top) for top in inputs]
    verified: dict[Path, Package] = {}
    signed_as: set[str] = set()
    for tree in walked:
        checked = verify(tree.top, tree.paths, trust, "repo", log, digests=True)
        verified.update(checked.packages)
        signed_as |= set(checked.signed_as)
    name = repository.check_key_name(repository.index_key_name(key_file, signed_as))
    opened.deadline = deadline
    if not dry_run:
        opened.ensure_ready(store.create_bucket)
    options = repository.Options(
        branch, prefix, keep, replace, dry_run, repository.GRACE if grace is None else grace
    )
    return repository.add(
        walked,
        verified,
        opened,
        options,
        key_name=name,
        public=public,
        private=private,
        public_pem=pem,
        log=log,
    )
