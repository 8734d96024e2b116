"""What a publish will do: the object keys of a deployment, the archive checked against
the verified bytes, and, from one read of storage, what it already holds."""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakman import tree
from pakman.digest import Digest, digest_file
from pakman.errors import ConfigError
from pakman.placement import ARCHIVE_LAYOUT, is_folder_entry, placement
from pakman.publish.archive import ArchiveRead, entry_sha256, read_archive
from pakman.publish.deployment import Deployment
from pakman.storage.objects import Condition, LocalObject, RemoteObject, Store, local_object

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Plan:
    """Every object to publish, in commit order, and which of them storage already holds."""

    deployment: Deployment
    packages: tuple[LocalObject, ...]
    archive: LocalObject
    skip: frozenset[str] = frozenset()
    stale_manifest: bool = False  # storage holds a manifest that this publish will replace
    # The ETag of each object storage held when the plan was made: a write replaces only
    # that (If-Match), and a key absent here only if still absent (If-None-Match).
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def archive_path(self) -> str:
        return self.archive.key

    def condition(self, key: str) -> Condition:
        """What a write of ``key`` requires: storage still as it was when planned."""
        return Condition(self.versions.get(key))


def check_archive(
    archive: Path,
    packages: tuple[LocalObject, ...],
    hashed: Mapping[str, str | None] | None = None,
) -> None:
    """The archive must hold exactly the packages tree, so a stale or forged zip never ships.

    Every entry must be ``[<folders>/]<repo>/<arch>/<file>``, placed by its last two parts
    as the deployment agent places it (no absolute or ``..`` names, no duplicates, nothing
    but package files), and its bytes, as a reader extracts them, must
    have the SHA-256 of the verified tree file. A size and CRC-32 that match are not
    enough: a CRC-32 is easily forged. ``hashed``: those SHA-256s by entry name, where a
    read of the same archive already took them (:func:`.archive.read_archive`); an entry
    whose SHA-256 there differs is extracted again, to say whether it is corrupt.
    """
    expected = {"/".join(o.key.split("/")[-2:]): o for o in packages}
    problems: list[str] = []
    try:
        with zipfile.ZipFile(archive) as zipped:
            seen: dict[str, str] = {}
            for info in zipped.infolist():
                name = info.filename
                if info.is_dir() and is_folder_entry(name):
                    continue
                key = placement(name) if not info.is_dir() else None
                if key is None:
                    problems.append(f"{archive}: unexpected entry {name!r} (not {ARCHIVE_LAYOUT})")
                    continue
                if key in seen:
                    problems.append(f"{archive}: {key} twice ({seen[key]!r} and {name!r})")
                    continue
                seen[key] = name
                local = expected.get(key)
                if local is None:
                    problems.append(f"{archive}: has {name}, not in the packages tree")
                elif info.file_size != local.size or local.crc32 != info.CRC:
                    problems.append(f"{archive}: {name} differs from {local.path}")
                elif (found := _hashed(hashed, zipped, info, local.sha256)) != local.sha256:
                    problems.append(
                        f"{archive}: {name} is corrupt (its bytes fail their CRC)"
                        if found is None
                        else f"{archive}: {name} differs from {local.path}"
                    )
            problems += [f"{archive}: lacks {key}" for key in sorted(set(expected) - set(seen))]
    except (OSError, zipfile.BadZipFile, zlib.error) as error:
        raise ConfigError(f"{archive}: not a readable zip ({error.__class__.__name__})") from None
    if problems:
        raise ConfigError(*problems, "rebuild the archive with 'pakman merge'")


def _hashed(
    hashed: Mapping[str, str | None] | None,
    zipped: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    expected: str,
) -> str | None:
    if hashed is not None and hashed.get(info.filename) == expected:
        return expected
    return entry_sha256(zipped, info)


def plan(
    snapshot: tree.Snapshot,
    digests: Mapping[Path, Digest],
    archive: Path,
    deployment: Deployment,
    read: ArchiveRead | None = None,
) -> Plan:
    """Lay out the object keys of the snapshot's files, described by the digests of the
    bytes verified in this run, and of the archive, read now or by ``read`` (in this run,
    beside verification), and checked against those same digests (no storage access)."""
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive (make it with 'pakman merge')")
    packages = tuple(
        local_object(deployment.prefix + key, path, digests[path])
        for key, path in snapshot.files.items()
    )
    read = read or read_archive(archive)
    check_archive(archive, packages, read.entries if read else None)
    archived = read.digest if read else digest_file(archive)
    key = archive_key(archived.sha256, archive.name)
    return Plan(deployment, packages, local_object(key, archive, archived))


def archive_key(sha256: str, name: str) -> str:
    """The archive's key names its content: a retry re-uses it."""
    return f"archives/{sha256}/{name}"


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
    archive_key: str | None = None  # when the archive's key was known: what it holds
    archive: RemoteObject | None = None


def survey(store: Store, deployment: Deployment) -> Survey:
    """Read what storage holds, with the checksums it keeps; it needs no hashes, so it can
    run while files hash."""
    return Survey(
        store.list(deployment.prefix, checksums=True),
        _existing_manifest(store, deployment.manifest_key),
    )


def matching(plan: Plan, store: Store, seen: Survey) -> tuple[set[str], dict[str, RemoteObject]]:
    """The keys of the plan's objects that storage holds with the same bytes, and what
    storage holds: the deployment's prefix and the archive, which lives elsewhere (one
    HEAD, unless the survey read it)."""
    remote = dict(seen.objects)
    known = seen.archive_key == plan.archive.key
    archived = seen.archive if known else store.head(plan.archive.key)
    if archived is not None:
        remote[archived.key] = archived
    held = {
        local.key
        for local in (*plan.packages, plan.archive)
        if local.key in remote and store.matches(local, remote[local.key])
    }
    return held, remote


def reconcile(plan: Plan, store: Store, seen: Survey) -> Plan:
    """Skip every object whose size and SHA-256 already match what storage holds; every
    other write is made conditional on what storage held."""
    skip, remote = matching(plan, store, seen)
    versions = {key: held.etag for key, held in remote.items() if held.etag}
    existing = None if seen.manifest is None else dict(seen.manifest)
    stale = False
    if existing is not None:
        existing.pop("created_at", None)
        complete = len(skip) == len(plan.packages) + 1
        if complete and existing == manifest_body(plan):
            skip.add(plan.deployment.manifest_key)
        else:
            stale = True  # retracted before anything changes, rewritten last
    return dataclasses.replace(plan, skip=frozenset(skip), stale_manifest=stale, versions=versions)
