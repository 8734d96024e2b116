"""The steps the CLI and the Dagger module share, with the options they take.

Each front end resolves its arguments once (the CLI also reads the environment) into the
frozen option objects below, then calls the same step functions. Defaults, the verification
policy and archive handling therefore live here only, and the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pakman.errors import ConfigError, VerificationError, check_credential, redact
from pakman.identity import Identity

if TYPE_CHECKING:
    from pakman.apk import Package
    from pakman.config import Config
    from pakman.deploy import Pushed
    from pakman.digest import Digest
    from pakman.merge import Merged
    from pakman.publish import Deployment, ProgressFactory, Summary
    from pakman.publish.archive import ArchiveRead
    from pakman.publish.filestore import FileStore
    from pakman.publish.plan import Survey
    from pakman.publish.prefetch import Look, Prefetch
    from pakman.publish.s3 import S3Store
    from pakman.serve.repository import Summary as RepoSummary
    from pakman.tree import Snapshot

Log = Callable[[str], None]
DEFAULT_REGION = "us-east-1"
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
ARCHIVE_NAME = "packages.zip"
DEFAULT_TIMEOUT = 30 * 60  # seconds for a whole publish or push


def _quiet(_: str) -> None:
    pass


# --- checking a config ------------------------------------------------------------------


def check_summary(cfg: Config, name: str) -> str:
    """What ``check`` reports for a valid config: one line, then one per warning."""
    notes = "".join(f"\nwarning: {w}" for w in cfg.warnings)
    return f"{name}: ok ({cfg.type} package, {len(cfg.architectures)} arch){notes}"


# --- trust: what packages are verified against -------------------------------------------


@dataclass(frozen=True)
class Trust:
    """The public keys packages are verified against before they are merged or shipped.

    Verification is required: only ``skip`` (``--no-verify``, ``skip_verify``) ships
    unverified packages. v8's ``push`` never verified, so for it alone a missing key is
    a warning (``required=False``).
    """

    keys: Mapping[str, bytes] = field(default_factory=dict)  # PEM by file name
    skip: bool = False
    required: bool = True


def trust_files(paths: Sequence[str], *, skip: bool = False) -> Trust:
    """Trust the ``--key`` files, under their file names (apk trusts a key by its name)."""
    named = {}
    for name in paths:
        try:
            named[Path(name).name] = Path(name).read_bytes()
        except OSError as error:
            raise ConfigError(f"--key: {name}: cannot read: {error.strerror}") from None
    return Trust(named, skip=skip)


def trust_pem(pem: bytes | None, identity: Identity, *, skip: bool = False) -> Trust:
    """Trust one PEM key under the name abuild signs with: ``<org>-<slug>.rsa.pub``."""
    return Trust({f"{identity.key_name}.pub": pem} if pem else {}, skip=skip)


def trust_for_push(
    paths: Sequence[str], identity: Identity, env: Mapping[str, str], home: Path, *, skip: bool
) -> Trust:
    """v8's push: ``--key``, else ``ABUILD_PUBLIC_KEY``, else ``~/.abuild/`` from bootstrap."""
    if paths:
        return trust_files(paths, skip=skip)
    pem = env.get("ABUILD_PUBLIC_KEY")
    installed = home / ".abuild" / f"{identity.key_name}.pub"
    if not pem and installed.is_file():
        pem = installed.read_text()
    return dataclasses.replace(
        trust_pem(pem.encode() if pem else None, identity, skip=skip), required=False
    )


@dataclass(frozen=True)
class Verified:
    """What verification proved, in this run: the signing key's fingerprint (None when not
    verified) and the digests of the very bytes it read, file by file."""

    fingerprint: str | None
    digests: Mapping[Path, Digest] = field(default_factory=dict)
    packages: Mapping[Path, Package] = field(default_factory=dict)  # as verification read them
    signed_as: Mapping[str, str] = field(default_factory=dict)  # key file by its signing name


def check_trust(trust: Trust) -> None:
    """Refuse, before anything is read, a run that must verify but has no key."""
    if trust.required and not trust.skip and not trust.keys:
        raise ConfigError(
            "--key: a trusted public key is required to verify packages"
            " (or skip verification explicitly with --no-verify)"
        )


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
    check_trust(trust)
    if not trust.keys:
        log(
            "warning: no public key (--key, ABUILD_PUBLIC_KEY or ~/.abuild/): packages not verified"
        )
        return Verified(None)
    from pakman.keys import fingerprint
    from pakman.verify import trusted_keys, verify_tree

    report = verify_tree(tree, files, trusted_keys(trust.keys), digests=digests)
    if not report.ok:
        raise VerificationError(
            *(str(problem) for problem in report.problems),
            f"{what} refused: verification failed ({len(report.problems)} problem(s))",
        )
    for note in report.notes:
        log(note)
    fingerprint_ = "sha256:" + fingerprint(next(iter(trust.keys.values())))
    return Verified(fingerprint_, report.digests, report.verified, report.signed_as)


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
    from pakman.tree import files

    check_writable(output, "--output")
    if packages_dir is not None:
        check_writable(packages_dir, "--packages-dir", folder=True)
    merged = merge_module.collect(list(inputs))
    with tempfile.TemporaryDirectory(prefix="pakman-merge-") as tmp:
        tree = packages_dir or Path(tmp)
        if packages_dir is not None or not trust.skip:
            merge_module.write_tree(merged, tree)
        # The merged tree is what ships: the index beside each package is checked there.
        verify(tree, files(tree), trust, "merge", log)
    return merged, merge_module.write_zip(merged, output)


# Folders a run is writing into that must go even when the run is cut short by its
# watchdog (which ends the process at once): a made archive is as big as the packages.
SCRATCH: set[str] = set()


@contextlib.contextmanager
def archive_for(snapshot: Snapshot, archive: Path | None, log: Log = _quiet) -> Iterator[Path]:
    """The archive to ship: the one given, else a deterministic zip of the snapshot's
    files, made afresh in a temporary folder (removed afterwards, also on SIGTERM). Either
    way publish checks it against the verified bytes before anything is uploaded."""
    if archive is not None:
        yield archive
        return
    import tempfile

    from pakman import merge as merge_module

    with tempfile.TemporaryDirectory(prefix="pakman-archive-") as tmp:
        SCRATCH.add(tmp)
        try:
            made = Path(tmp) / ARCHIVE_NAME
            digest = merge_module.write_zip(merge_module.Merged(snapshot.entries()), made)
            log(f"no archive given: made {ARCHIVE_NAME} from the packages tree (sha256 {digest})")
            yield made
        finally:
            SCRATCH.discard(tmp)


def v8_archive(given: str, home: Path) -> Path | None:
    """Where v8's push found the archive: as given, else in $HOME; None when in neither."""
    path = Path(given)
    if path.exists():
        return path
    if not path.is_absolute() and (home / path).exists():
        return home / path
    return None


# --- where packages are published --------------------------------------------------------


class AddressingStyle(enum.Enum):
    """How an S3 bucket is addressed."""

    AUTO = "auto"
    """Virtual-hosted where the endpoint allows it, else path style."""
    PATH = "path"
    """https://endpoint/bucket/key"""
    VIRTUAL = "virtual"
    """https://bucket.endpoint/key"""


@dataclass(frozen=True)
class StoreOptions:
    """Where to publish: an S3-compatible bucket or a ``file:///`` folder."""

    bucket: str | None = None
    store: str | None = None  # file:///dir or s3://bucket
    endpoint: str | None = None
    region: str = DEFAULT_REGION
    addressing_style: AddressingStyle = AddressingStyle.AUTO
    verify_tls: bool = True
    concurrency: int = DEFAULT_CONCURRENCY
    create_bucket: bool = False
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        bucket: str | None = None,
        store: str | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        addressing_style: str | AddressingStyle = AddressingStyle.AUTO,
        verify_tls: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        create_bucket: bool = False,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> StoreOptions:
        """Options from arguments, then ``AWS_REGION`` and ``AWS_ENDPOINT_URL[_S3]``.

        Credentials are checked, whether given or left to botocore to read from ``env``.
        """
        check_credential("access-key-id", access_key_id or None)
        check_credential("secret-access-key", secret_access_key or None)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            check_credential(name, env.get(name) or None)
        try:
            style = AddressingStyle(addressing_style)
        except ValueError:
            raise ConfigError(
                f"--addressing-style: must be auto, path or virtual (got {addressing_style!r})"
            ) from None
        return cls(
            bucket=bucket or None,
            store=store or None,
            endpoint=endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION,
            addressing_style=style,
            verify_tls=verify_tls,
            concurrency=check_concurrency(concurrency),
            create_bucket=create_bucket,
            access_key_id=access_key_id or None,
            secret_access_key=secret_access_key or None,
        )

    def open(self) -> FileStore | S3Store:
        from pakman.publish.target import open_store

        return open_store(
            self.store,
            self.bucket,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            addressing_style=self.addressing_style.value,
            verify_tls=self.verify_tls,
            concurrency=self.concurrency,
        )


def check_timeout(seconds: float) -> float:
    if not 0 < seconds <= 7 * 24 * 3600:
        raise ConfigError(f"--timeout: must be 1 second to 7 days (got {seconds})")
    return seconds


def check_concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(f"--concurrency: must be 1 to {MAX_CONCURRENCY} (got {value})")
    return value


# --- checks of options and environment, before any heavy work -------------------------
# Verifying, hashing and zipping a tree of gigabytes takes a while: whatever a run will
# refuse anyway (a bucket name, missing credentials, an unreadable file, an unwritable
# folder) is refused first.


def open_checked(store: StoreOptions) -> FileStore | S3Store:
    """The store, its name, endpoint and credentials checked; no request is made."""
    from pakman.publish.s3 import S3Store

    opened = store.open()  # refuses a bad --store, --bucket or --endpoint
    given = store.access_key_id and store.secret_access_key
    if isinstance(opened, S3Store) and not given and not _credentials_in_env(os.environ):
        # botocore's own search (variables, profiles, a role): what the upload would use.
        import botocore.session
        from botocore.exceptions import BotoCoreError

        try:
            found = botocore.session.get_session().get_credentials()
        except BotoCoreError as error:  # a profile that is not there, a broken config file
            raise ConfigError(f"storage {opened.describe()}: credentials: {error}") from None
        if found is None:
            raise ConfigError(
                f"storage {opened.describe()}: no credentials"
                " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile)"
            )
    return opened


def _credentials_in_env(env: Mapping[str, str]) -> bool:
    """Whether botocore's search would find credentials in ``env`` first: both keys set
    and no profile named. Then its import (half a second of CPU) is left to the requests,
    which run beside verification."""
    return bool(
        env.get("AWS_ACCESS_KEY_ID")
        and env.get("AWS_SECRET_ACCESS_KEY")
        and not env.get("AWS_PROFILE")
        and not env.get("AWS_DEFAULT_PROFILE")
    )


def check_readable(path: Path | None, option: str) -> None:
    """A file a run will read later, checked now."""
    if path is None:
        return
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(f"{option}: {path}: cannot read: {error.strerror}") from None
    if not path.is_file():
        raise ConfigError(f"{option}: {path}: not a regular file")


def check_writable(path: Path, option: str, *, folder: bool = False) -> None:
    """A file (or, with ``folder``, a folder) a run will write later: the nearest folder
    that exists must take it now (missing folders are made as it is written)."""
    if path.is_dir() and not folder:
        raise ConfigError(f"{option}: {path}: cannot write: is a directory")
    existing = path.absolute() if folder else path.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: {existing}: not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: {existing}: cannot write here")


def deployment(
    repository: str | None,
    sha: str | None,
    ref: str | None = None,
    build: str | int | None = None,
    env: Mapping[str, str] | None = None,
) -> Deployment:
    """What is published, from arguments, then v8's variables (``WORKFLOW_SHA``, ``GITHUB_*``)."""
    from pakman.publish import Deployment

    env = env or {}
    repository = repository or env.get("GITHUB_REPOSITORY")
    if not repository:
        raise ConfigError("--repository: required (or set GITHUB_REPOSITORY), e.g. acme/app")
    number = build if build not in (None, "") else env.get("GITHUB_RUN_NUMBER")
    return Deployment(
        identity=Identity(repository, build=build_number(number)),
        sha=sha or env.get("WORKFLOW_SHA") or env.get("GITHUB_SHA") or "",
        ref=ref or env.get("WORKFLOW_REF") or env.get("GITHUB_REF") or "",
    )


def build_number(value: str | int | None) -> int:
    """The pkgrel: ASCII digits only (``int()`` would take '²' or ' 7')."""
    if value is None or value == "":
        return 0
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"--build: must be a whole number (got {text!r})")
    return int(text)


# --- publish and push -----------------------------------------------------------------


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
    from pakman.digest import digest_file
    from pakman.publish.prefetch import Prefetch
    from pakman.tree import snapshot

    deadline = time.monotonic() + check_timeout(timeout)
    check_trust(trust)
    walked = snapshot(tree)
    # A given archive, and with ``look`` storage, are read while the packages are verified
    # (a made archive, after).
    given = archive is not None and archive.is_file()
    reading = Prefetch(archive, look) if read_ahead and archive is not None and given else None
    try:
        verified = verify(tree, walked.paths, trust, what, log, digests=True)
        digests = {path: verified.digests.get(path) or digest_file(path) for path in walked.paths}
        with archive_for(walked, archive, log) as zip_path:
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
    from pakman import publish as publish_module
    from pakman.publish.upload import look_ahead

    opened = open_checked(store)
    check_readable(archive, "--archive")
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
        return publish_module.publish(
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


@dataclass(frozen=True)
class InstellarOptions:
    """The OpsMaru/Instellar deployment API and its tokens."""

    auth_token: str = field(repr=False)
    package_token: str = field(default="", repr=False)
    endpoint: str = ""

    @classmethod
    def resolve(
        cls,
        env: Mapping[str, str],
        *,
        auth_token: str | None = None,
        package_token: str | None = None,
        endpoint: str | None = None,
    ) -> InstellarOptions:
        """Tokens and endpoint from arguments, then v8's ``INSTELLAR_*`` variables."""
        from pakman.instellar import DEFAULT_ENDPOINT

        token = auth_token or env.get("INSTELLAR_AUTH_TOKEN")
        if not token:
            raise ConfigError("INSTELLAR_AUTH_TOKEN: required for push")
        package = package_token or env.get("INSTELLAR_PACKAGE_TOKEN") or ""
        check_credential("instellar-auth-token" if auth_token else "INSTELLAR_AUTH_TOKEN", token)
        check_credential(
            "instellar-package-token" if package_token else "INSTELLAR_PACKAGE_TOKEN", package
        )
        name = "--instellar-endpoint" if endpoint else "INSTELLAR_ENDPOINT"
        endpoint = endpoint or env.get("INSTELLAR_ENDPOINT") or DEFAULT_ENDPOINT
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{name}: must be an http(s) URL (got {redact(endpoint, [token, package])!r})"
            )
        return cls(auth_token=token, package_token=package, endpoint=endpoint)


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
    from pakman.deploy import push as push_deployment
    from pakman.instellar import Client

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


# --- serve: a signed apk repository ---------------------------------------------------

REPO_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def index_key_name(key_file: str, signed_as: set[str]) -> str:
    """The name the repository's index is signed as: the packages' own, so that hosts trust
    one key under one name, whatever the ``--key`` file is called."""
    if len(signed_as) > 1:
        raise ConfigError(
            f"--key: {key_file} verifies packages signed under several names"
            f" ({', '.join(sorted(signed_as))}): hosts can trust only one; rebuild them"
        )
    return next(iter(signed_as), key_file)


def repo(
    inputs: Sequence[Path],
    key: Path,
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
    """Verify the packages of ``inputs`` with ``key``, then add them to the signed apk
    repository in ``store`` (:mod:`pakman.serve.repository`), signing its index with
    the private key, which must be the pair of ``key``."""
    from pakman import keys
    from pakman.serve import repository
    from pakman.tree import snapshot

    if not REPO_PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ConfigError(f"--prefix: must be a relative path of safe names (got {prefix!r})")
    deadline = time.monotonic() + check_timeout(timeout)
    trust = trust_files([str(key)])
    pem = trust.keys[key.name]
    keys.check_pair(private_pem, pem, private_name="--private-key", public_name="--key")
    opened = open_checked(store)
    walked = [snapshot(top) for top in inputs]
    verified: dict[Path, Package] = {}
    signed_as: set[str] = set()
    for tree in walked:
        checked = verify(tree.top, tree.paths, trust, "repo", log, digests=True)
        verified.update(checked.packages)
        signed_as |= set(checked.signed_as)
    name = repository.check_key_name(index_key_name(key.name, signed_as))
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
        public=keys.load_public(pem, f"--key: {name}"),
        private_pem=private_pem,
        public_pem=pem,
        log=log,
    )
