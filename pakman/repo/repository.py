"""Add packages to a signed apk repository in a bucket or folder, as Alpine mirrors lay
one out: ``<prefix>/<branch>/<org>/<arch>/APKINDEX.tar.gz`` with the ``.apk`` files
beside it, so ``https://<host>/<bucket>/<prefix>/<branch>/<org>`` is a line for a host's
``/etc/apk/repositories``; the public key at ``<prefix>/keys/<name>.rsa.pub``.

Order, per ``<org>/<arch>``: the run's packages first (re-sent when storage no longer
holds their bytes), then the index, written only while the index is still the one read
(the commit point: If-Match, or If-None-Match for the first; a lock on a file store).
A package leaves the index first and storage only a grace period later (hosts keep an
index for hours): the index's state records when; the run that deletes it first marks
it in a commit of its own, so a run that wants it back waits rather than lists a package
being deleted. A version replaced in place leaves the index before its new bytes are
sent. A run cut short at any point leaves an index apk can use: every package it lists
is in place. Two runs at once re-read and re-merge when the other committed first.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman import apk, apkversion, tree
from pakman.errors import ConfigError, PublishError, VerificationError
from pakman.repo import index
from pakman.repo.next_index import Merge, merge
from pakman.repo.state import LEASE, State
from pakman.storage.objects import RemoteObject, Store, bytes_object, local_object

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

Log = Callable[[str], None]
ATTEMPTS = 10  # commits lost to other runs before giving up
GRACE = 4 * 3600.0  # apk keeps a fetched index up to 4 hours (its cache's max age)
# What hosts and CDNs may cache: the index changes in place, a package file never does.
INDEX_CACHE = "no-cache"
PACKAGE_CACHE = "public, max-age=31536000, immutable"
KEY_CACHE = "no-cache"


@dataclass(frozen=True)
class Options:
    """Where the repository is and how it is kept."""

    branch: str
    prefix: str = "alpine"
    keep: int = 5
    replace: bool = False
    dry_run: bool = False
    grace: float = GRACE  # seconds a package stays in storage after leaving the index

    def base(self, org: str) -> str:
        return f"{self.prefix.strip('/')}/{self.branch}/{org}/"

    def folder(self, org: str, arch: str) -> str:
        return f"{self.base(org)}{arch}/"

    def key_path(self, key_name: str) -> str:
        return f"{self.prefix.strip('/')}/keys/{key_name}"


@dataclass
class Summary:
    """What a run did (or, with --dry-run, would do), per ``<org>/<arch>`` index."""

    options: Options
    indexes: dict[str, Merge] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)  # per index: swept files
    conflicts: int = 0  # commits another run won, re-read and merged again

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.options.branch,
            "prefix": self.options.prefix,
            "keep": self.options.keep,
            "grace": self.options.grace,
            "dry_run": self.options.dry_run,
            "conflicts": self.conflicts,
            "indexes": {
                key: {**merged.as_dict(), "deleted": self.deleted.get(key, [])}
                for key, merged in self.indexes.items()
            },
        }

    def lines(self) -> list[str]:
        verb = "would " if self.options.dry_run else ""
        out = []
        for key, merged in self.indexes.items():
            deleted = self.deleted.get(key, [])
            out.append(
                f"{key}: {verb}add {len(merged.added)}, replace {len(merged.replaced)},"
                f" keep {len(merged.kept)}, prune {len(merged.pruned)}, delete {len(deleted)}"
            )
            for kind, names in (
                ("added", merged.added),
                ("replaced", merged.replaced),
                ("pruned", merged.pruned),
                ("deleted", tuple(deleted)),
            ):
                out += [f"  {kind} {name}" for name in names]
        return out


@dataclass(frozen=True)
class NewPackage:
    """A verified package of the run, and the index it goes to."""

    path: Path
    package: apk.Package
    org: str
    arch: str


def _sha256(new: NewPackage) -> str:
    assert new.package.digest is not None  # verified for shipping: read with its digests
    return new.package.digest.sha256


def collect(
    trees: Sequence[tree.Snapshot],
    verified: Mapping[Path, apk.Package],
    served: Callable[[str], set[str]] = lambda _: set(),
) -> dict[tuple[str, str], list[NewPackage]]:
    """The verified packages of the trees, by ``(org, arch)``: indexes in the trees are
    verified, not shipped (the repository's own index replaces them).

    One file name with other bytes in two trees is refused, as merge refuses it. apk
    fetches ``<arch>/APKINDEX.tar.gz`` only, so packages of a ``noarch/`` folder go to
    every arch the run or the repository (``served(org)``) has, as abuild puts them.
    """
    groups: dict[tuple[str, str], dict[str, NewPackage]] = defaultdict(dict)
    problems: list[str] = []

    def place(group: tuple[str, str], new: NewPackage) -> None:
        previous = groups[group].setdefault(new.path.name, new)
        if previous is not new and _sha256(previous) != _sha256(new):
            problems.append(
                f"{group[0]}/{group[1]}/{new.path.name}: conflict: {previous.path} and"
                f" {new.path} differ"
            )

    noarch: dict[str, list[NewPackage]] = defaultdict(list)
    for snapshot in trees:
        for key, path in snapshot.files.items():
            if not path.name.endswith(".apk"):
                continue
            org = path.relative_to(snapshot.top).parts[0]
            arch = key.split("/")[0]
            new = NewPackage(path, verified[path], org, arch)
            if arch == "noarch":
                noarch[org].append(new)
            else:
                place((org, arch), new)
    for org, packages in noarch.items():
        arches = {a for o, a in groups if o == org} | (served(org) - {"noarch"})
        if not arches:
            problems.append(
                f"{org}/noarch: apk reads only <arch>/{index.INDEX_NAME}, and neither this run"
                " nor the repository has an arch folder to list these packages in: add the"
                " packages of an arch (noarch packages are listed in every arch's index)"
            )
        for arch in sorted(arches):
            for new in packages:
                place((org, arch), dataclasses.replace(new, arch=arch))
    if problems:
        raise ConfigError(*problems)
    return {group: list(found.values()) for group, found in sorted(groups.items())}


def check_versions(groups: Mapping[tuple[str, str], list[NewPackage]]) -> None:
    """Versions apk refuses are refused before anything is written (exit 1)."""
    bad = sorted(
        {
            f"{new.path}: pkgver {new.package.field('pkgver')!r} is not a version apk accepts"
            for packages in groups.values()
            for new in packages
            if not apkversion.valid(new.package.field("pkgver"))
        }
    )
    if bad:
        raise VerificationError(*bad)


def add(
    trees: Sequence[tree.Snapshot],
    verified: Mapping[Path, apk.Package],
    store: Store,
    options: Options,
    *,
    key_name: str,
    public: RSAPublicKey,
    private: RSAPrivateKey,
    public_pem: bytes | None = None,
    log: Log = lambda _: None,
) -> Summary:
    """Add the verified packages of ``trees`` to the repository in ``store``."""
    summary = Summary(options)
    trusted = {key_name: public}
    groups = collect(trees, verified, lambda org: _served_arches(store, options, org))
    check_versions(groups)
    if not options.dry_run:
        probe_conditional_writes(store, options)
        if public_pem is not None:
            _publish_key(store, options.key_path(key_name), public_pem, public, log)
    for (org, arch), packages in groups.items():
        folder = options.folder(org, arch)
        key = folder + index.INDEX_NAME
        summary.indexes[key] = _commit(
            store, folder, arch, packages, options, key_name, trusted, private, summary, log
        )
    return summary


def _served_arches(store: Store, options: Options, org: str) -> set[str]:
    """The arches that have an index in the repository (listed only for noarch)."""
    base = options.base(org)
    pattern = re.compile(re.escape(base) + r"([^/]+)/" + re.escape(index.INDEX_NAME))
    return {m[1] for key in store.list(base) if (m := pattern.fullmatch(key))}


def probe_conditional_writes(store: Store, options: Options) -> None:
    """Refuse a store that ignores If-None-Match or If-Match: two runs at once would
    each think their index won, and one run's packages would vanish from it."""
    probe = bytes_object(f"{options.prefix.strip('/')}/.pakman-probe-{uuid.uuid4().hex}", b"1")
    try:
        first = store.write_if(probe, None)
        again = store.write_if(probe, None)
        stale = store.write_if(probe, '"0123456789abcdef0123456789abcdef"')
    finally:
        store.delete(probe.key)
    ignored = [
        what
        for what, failed in (
            ("If-None-Match", not first or again),
            ("If-Match", stale),
        )
        if failed
    ]
    if ignored:
        raise PublishError(
            f"storage {store.describe()}: ignores conditional writes ({', '.join(ignored)}):"
            " two runs at once could lose each other's packages; use a store that honours"
            " them (AWS S3, Cloudflare R2, MinIO, versitygw)"
        )


def _publish_key(
    store: Store, path: str, public_pem: bytes, public: RSAPublicKey, log: Log
) -> None:
    """The public key beside the repository, for hosts to fetch: written once, and a
    repository whose key is another is refused (its hosts trust that one)."""
    from pakman.keys import load_public

    if store.write_if(bytes_object(path, public_pem, KEY_CACHE), None):
        log(f"put    {path}")
        return
    found = store.read_versioned(path, limit=64 * 1024)
    same = False
    if found is not None:
        try:
            same = load_public(found[0], path).public_numbers() == public.public_numbers()
        except ConfigError:
            same = False
    if not same:
        raise VerificationError(
            f"{store.describe()}/{path}: the repository's public key is another key than"
            " --key: its hosts trust that one; sign with its pair, or use another --prefix"
        )


def _commit(
    store: Store,
    folder: str,
    arch: str,
    packages: list[NewPackage],
    options: Options,
    key_name: str,
    trusted: Mapping[str, RSAPublicKey],
    private: RSAPrivateKey,
    summary: Summary,
    log: Log,
) -> Merge:
    key = folder + index.INDEX_NAME
    where = f"{store.describe()}/{key}"
    records = [index.record(p.package, arch) for p in packages]
    by_name = {p.path.name: p for p in packages}
    description = f"{folder.rstrip('/')} (pakman)"

    def sign(entries: Sequence[index.Record], state: State) -> bytes:
        return index.build(entries, description, key_name, private, state)

    conflicts = 0
    waited = 0.0
    replacing: set[str] = set()  # left the index in an earlier commit of this run
    while True:
        current = store.read_versioned(key, limit=apk.MAX_INFLATED)
        existing, state = (
            index.read_with_state(current[0], where, trusted) if current else ((), State())
        )
        merged = merge(existing, records, keep=options.keep, replace=options.replace, where=where)
        if options.dry_run:
            return merged
        now = time.time()
        busy = sorted(name for name in by_name if state.active(name, now))
        if busy:
            # Another run is deleting a package this run brings back: wait for it.
            if waited > LEASE:
                raise PublishError(f"{where}: {', '.join(busy)}: still being deleted; re-run")
            log(f"{key}: waiting: another run is deleting {', '.join(busy)}")
            pause = min(0.1 * 2 ** min(int(waited), 4), 2.0)
            time.sleep(pause)
            waited += pause
            store.check_deadline()
            continue
        held = store.list(folder)
        _check_listed(merged, by_name, held, folder, where)
        if merged.replaced:
            # The old bytes leave the index before the new ones are sent: a host never
            # meets an index whose C: names other bytes than the file.
            gone = set(merged.replaced)
            kept = [r for r in existing if index.filename(r) not in gone]
            interim = sign(kept, state)
            if store.write_if(_index_object(key, interim), current[1] if current else None):
                log(f"put    {key} (without {', '.join(sorted(gone))}, to replace them)")
                replacing |= gone
            else:
                conflicts = _lost(conflicts, summary, key, where, log)
            continue  # the next read has them as new
        for name in (*merged.added, *merged.replaced, *merged.unchanged):
            _upload(store, folder + name, by_name[name], log)
        doomed, following = _next_state(state, merged, held, folder, options.grace, now)
        built = sign(merged.records, following)
        index.read(built, f"{where} (as signed)", trusted)  # its signature, checked first
        if not store.write_if(_index_object(key, built), current[1] if current else None):
            conflicts = _lost(conflicts, summary, key, where, log)
            continue
        log(f"put    {key} ({len(merged.kept)} package(s))")
        summary.deleted[key] = _sweep(
            store, folder, key, doomed, following, sign, trusted, where, log
        )
        if replacing:  # added back by this commit: replaced, as far as the user is concerned
            merged = dataclasses.replace(
                merged,
                added=tuple(n for n in merged.added if n not in replacing),
                replaced=tuple(sorted({*merged.replaced, *(replacing & set(merged.added))})),
            )
        return merged


def _lost(conflicts: int, summary: Summary, key: str, where: str, log: Log) -> int:
    summary.conflicts += 1
    if conflicts + 1 >= ATTEMPTS:
        raise PublishError(
            f"{where}: other runs kept changing the index ({ATTEMPTS} attempts); re-run"
        )
    log(f"{key}: another run changed the index meanwhile: reading it again")
    time.sleep(0.05)
    return conflicts + 1


def _index_object(key: str, built: bytes) -> Any:
    return bytes_object(key, built, INDEX_CACHE)


def _check_listed(
    merged: Merge,
    by_name: Mapping[str, NewPackage],
    held: Mapping[str, RemoteObject],
    folder: str,
    where: str,
) -> None:
    """Every package the index goes on listing and this run does not bring must still be
    in storage with its size: an index never vouches for a file that is not there."""
    sizes = {index.filename(r): r.get("S", "") for r in merged.records}
    problems = []
    for name in merged.kept:
        if name in by_name:
            continue  # re-checked, and re-sent if need be, by its upload
        found = held.get(folder + name)
        if found is None:
            problems.append(f"{where}: lists {name}, which storage no longer holds")
        elif str(found.size) != sizes.get(name):
            problems.append(
                f"{where}: lists {name} ({sizes.get(name)} bytes), but storage holds"
                f" {found.size} bytes under that name"
            )
    if problems:
        raise VerificationError(
            *problems, "re-run with the trees that hold these packages: their bytes are re-sent"
        )


def _next_state(
    state: State,
    merged: Merge,
    held: Mapping[str, RemoteObject],
    folder: str,
    grace: float,
    now: float,
) -> tuple[list[str], State]:
    """The state the commit writes, and the packages it marks for deletion: those out of
    the index for the grace period, and files no index listed (left by a run that never
    committed) last written that long ago."""
    kept = set(merged.kept)
    dropped = {n: t for n, t in state.dropped.items() if n not in kept}
    dropped.update({name: now for name in merged.pruned})
    deleting = {n: t for n, t in state.deleting.items() if n not in kept and state.active(n, now)}
    doomed = [n for n, t in dropped.items() if now - t >= grace]
    doomed += [n for n, t in state.deleting.items() if n not in kept and not state.active(n, now)]
    for key, found in held.items():
        name = key[len(folder) :]
        if (
            name.endswith(".apk")
            and "/" not in name
            and name not in kept
            and name not in dropped
            and name not in state.deleting
            and found.modified is not None
            and now - found.modified >= grace
        ):
            doomed.append(name)
    doomed = sorted(set(doomed))
    for name in doomed:
        dropped.pop(name, None)
        deleting[name] = now
    return doomed, State(dropped, deleting)


def _sweep(
    store: Store,
    folder: str,
    key: str,
    doomed: list[str],
    marked: State,
    sign: Callable[[Sequence[index.Record], State], bytes],
    trusted: Mapping[str, RSAPublicKey],
    where: str,
    log: Log,
) -> list[str]:
    """Delete the packages this run's commit marked, while its mark holds, then clear
    the marks (a run cut short leaves them to expire, and a later run sweeps again)."""
    deleted = []
    for name in doomed:
        if time.time() - marked.deleting[name] >= LEASE / 2:
            log(f"{folder}{name}: left for a later run (this run's mark is too old)")
            continue
        store.delete(folder + name)
        deleted.append(name)
        log(f"delete {folder}{name} (out of the index for the grace period)")
    for _ in range(ATTEMPTS):
        current = store.read_versioned(key, limit=apk.MAX_INFLATED)
        if current is None:
            break
        existing, state = index.read_with_state(current[0], where, trusted)
        mine = {n for n in doomed if state.deleting.get(n) == marked.deleting[n]}
        if not mine:
            break
        left = {n: t for n, t in state.deleting.items() if n not in mine}
        # A mark not acted on (too old) goes back to dropped: swept by a later run.
        dropped = {**state.dropped, **{n: marked.deleting[n] for n in mine - set(deleted)}}
        cleared = State(dropped, left)
        if store.write_if(_index_object(key, sign(existing, cleared)), current[1]):
            break
        time.sleep(0.05)
    return deleted


def _upload(store: Store, key: str, new: NewPackage, log: Log) -> None:
    """Send the package unless storage holds its bytes: a package already listed whose
    object was overwritten or deleted is repaired here."""
    assert new.package.digest is not None  # verified for shipping: read with its digests
    local = dataclasses.replace(
        local_object(key, new.path, new.package.digest), cache_control=PACKAGE_CACHE
    )
    remote = store.head(key)
    if remote is not None and store.matches(local, remote):
        return
    store.put(local)  # checks it sends the verified bytes
    log(f"put    {key} ({local.size} bytes)")


def check_key_name(key_name: str) -> str:
    """The public key's file name, as hosts will name it in /etc/apk/keys."""
    if not key_name.endswith(".pub") or "/" in key_name:
        raise ConfigError(f"--key: {key_name}: the key file must be named <name>.pub")
    return key_name


REPO_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def check_prefix(prefix: str) -> None:
    if not REPO_PREFIX.fullmatch(prefix) or ".." in prefix.split("/"):
        raise ConfigError(f"--prefix: must be a relative path of safe names (got {prefix!r})")


def index_key_name(key_file: str, signed_as: set[str]) -> str:
    """The name the repository's index is signed as: the packages' own, so that hosts trust
    one key under one name, whatever the ``--key`` file is called."""
    if len(signed_as) > 1:
        raise ConfigError(
            f"--key: {key_file} verifies packages signed under several names"
            f" ({', '.join(sorted(signed_as))}): hosts can trust only one; rebuild them"
        )
    return next(iter(signed_as), key_file)
