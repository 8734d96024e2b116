"""Add packages to a signed apk repository in a bucket or folder, as Alpine mirrors lay
one out: ``<prefix>/<branch>/<org>/<arch>/APKINDEX.tar.gz`` with the ``.apk`` files
beside it, so ``https://<host>/<bucket>/<prefix>/<branch>/<org>`` is a line for a host's
``/etc/apk/repositories``.

Order, per ``<org>/<arch>``: the new packages first, then the index, written only while
the index is still the one read (the commit point: If-Match, or If-None-Match for the
first; a lock on a file store), then the pruned packages are deleted. A run cut short at
any point leaves an index apk can use: every package it lists is in place. Two runs at
once re-read and re-merge when the other committed first, so neither loses an entry.
Each run reads one index per ``<org>/<arch>``; it never lists the bucket.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman import apk, tree
from pakman.errors import ConfigError, PublishError
from pakman.publish.objects import Store, bytes_object, local_object
from pakman.serve import index
from pakman.serve.merge import Merge, merge

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

Log = Callable[[str], None]
ATTEMPTS = 10  # commits lost to other runs before giving up


@dataclass(frozen=True)
class Options:
    """Where the repository is and how it is kept."""

    branch: str
    prefix: str = "alpine"
    keep: int = 5
    replace: bool = False
    dry_run: bool = False

    def folder(self, org: str, arch: str) -> str:
        return f"{self.prefix.strip('/')}/{self.branch}/{org}/{arch}/"


@dataclass
class Summary:
    """What a run did (or, with --dry-run, would do), per ``<org>/<arch>`` index."""

    options: Options
    indexes: dict[str, Merge] = field(default_factory=dict)
    conflicts: int = 0  # commits another run won, re-read and merged again

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.options.branch,
            "prefix": self.options.prefix,
            "keep": self.options.keep,
            "dry_run": self.options.dry_run,
            "conflicts": self.conflicts,
            "indexes": {key: merged.as_dict() for key, merged in self.indexes.items()},
        }

    def lines(self) -> list[str]:
        verb = "would " if self.options.dry_run else ""
        out = []
        for key, merged in self.indexes.items():
            out.append(
                f"{key}: {verb}add {len(merged.added)}, replace {len(merged.replaced)},"
                f" keep {len(merged.kept)}, prune {len(merged.pruned)}"
            )
            for kind, names in (
                ("added", merged.added),
                ("replaced", merged.replaced),
                ("pruned", merged.pruned),
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


def collect(
    trees: Sequence[tree.Snapshot], verified: Mapping[Path, apk.Package]
) -> dict[tuple[str, str], list[NewPackage]]:
    """The verified packages of the trees, by ``(org, arch)``: indexes in the trees are
    verified, not shipped (the repository's own index replaces them)."""
    groups: dict[tuple[str, str], dict[str, NewPackage]] = defaultdict(dict)
    for snapshot in trees:
        for key, path in snapshot.files.items():
            if not path.name.endswith(".apk"):
                continue
            org = path.relative_to(snapshot.top).parts[0]
            arch = key.split("/")[0]
            groups[(org, arch)].setdefault(path.name, NewPackage(path, verified[path], org, arch))
    return {group: list(found.values()) for group, found in sorted(groups.items())}


def add(
    trees: Sequence[tree.Snapshot],
    verified: Mapping[Path, apk.Package],
    store: Store,
    options: Options,
    *,
    key_name: str,
    public: RSAPublicKey,
    private_pem: bytes,
    log: Log = lambda _: None,
) -> Summary:
    """Add the verified packages of ``trees`` to the repository in ``store``."""
    summary = Summary(options)
    trusted = {key_name: public}
    for (org, arch), packages in collect(trees, verified).items():
        folder = options.folder(org, arch)
        summary.indexes[folder + index.INDEX_NAME] = _commit(
            store, folder, arch, packages, options, key_name, trusted, private_pem, summary, log
        )
    return summary


def _commit(
    store: Store,
    folder: str,
    arch: str,
    packages: list[NewPackage],
    options: Options,
    key_name: str,
    trusted: Mapping[str, RSAPublicKey],
    private_pem: bytes,
    summary: Summary,
    log: Log,
) -> Merge:
    key = folder + index.INDEX_NAME
    where = f"{store.describe()}/{key}"
    records = [index.record(p.package, arch) for p in packages]
    by_name = {p.path.name: p for p in packages}
    for _ in range(ATTEMPTS):
        current = store.read_versioned(key)
        existing = index.read(current[0], where, trusted) if current else ()
        merged = merge(existing, records, keep=options.keep, replace=options.replace, where=where)
        if options.dry_run:
            return merged
        # 1. The packages, before any index names them.
        for name in (*merged.added, *merged.replaced):
            _upload(store, folder + name, by_name[name], log)
        # 2. The index: the commit point, only over the index this merge was made from.
        built = index.build(merged.records, f"{folder.rstrip('/')} (pakman)", key_name, private_pem)
        index.read(built, f"{where} (as signed)", trusted)  # its signature, checked first
        local = bytes_object(key, built)
        if not store.write_if(local, current[1] if current else None):
            summary.conflicts += 1
            log(f"{key}: another run changed the index meanwhile: reading it again")
            time.sleep(0.05)
            continue
        log(f"put    {key} ({len(merged.kept)} package(s))")
        # 3. Pruned packages, now that no index lists them.
        _prune(store, folder, key, merged, trusted, where, log)
        return merged
    raise PublishError(f"{where}: other runs kept changing the index ({ATTEMPTS} attempts); re-run")


def _upload(store: Store, key: str, new: NewPackage, log: Log) -> None:
    assert new.package.digest is not None  # verified for shipping: read with its digests
    local = local_object(key, new.path, new.package.digest)
    remote = store.head(key)
    if remote is not None and store.matches(local, remote):
        return
    store.put(local)  # checks it sends the verified bytes
    log(f"put    {key} ({local.size} bytes)")


def _prune(
    store: Store,
    folder: str,
    key: str,
    merged: Merge,
    trusted: Mapping[str, RSAPublicKey],
    where: str,
    log: Log,
) -> None:
    if not merged.pruned:
        return
    # Another run may have committed since: never delete what the index now lists.
    current = store.read_versioned(key)
    listed = (
        {index.filename(r) for r in index.read(current[0], where, trusted)} if current else set()
    )
    for name in merged.pruned:
        if name not in listed:
            store.delete(folder + name)
            log(f"delete {folder}{name} (beyond --keep)")


def check_key_name(key_name: str) -> str:
    """The public key's file name, as hosts will name it in /etc/apk/keys."""
    if not key_name.endswith(".pub") or "/" in key_name:
        raise ConfigError(f"--key: {key_name}: the key file must be named <name>.pub")
    return key_name
