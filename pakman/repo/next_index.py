"""What the next index of a repository holds: a pure function of the current one, the
new packages and the policy (``--keep``, ``--replace``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pakman.apkversion import version_key
from pakman.errors import ConfigError
from pakman.repo.index import Record, filename


@dataclass(frozen=True)
class Merge:
    """The next index, and what changed: file names of packages, per kind of change."""

    records: tuple[Record, ...]
    added: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()  # already there with the same bytes: nothing to do
    replaced: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()  # beyond --keep: out of the index, deleted after it
    kept: tuple[str, ...] = field(default=())  # every file the index lists

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "unchanged": list(self.unchanged),
            "replaced": list(self.replaced),
            "kept": list(self.kept),
            "pruned": list(self.pruned),
        }


def _same_bytes(a: Record, b: Record) -> bool:
    # C: is the SHA-1 of the control stream, which holds the datahash of the data stream;
    # S: the file's size. Together they name the package's bytes as apk checks them.
    return a.get("C") == b.get("C") and a.get("S") == b.get("S")


def merge(
    current: Iterable[Record], new: Sequence[Record], *, keep: int, replace: bool, where: str
) -> Merge:
    """Add ``new`` to ``current``; keep the newest ``keep`` versions of each name.

    A name and version already there with other bytes is refused (exit 2) unless
    ``replace``; with the same bytes it is left as it is.
    """
    if keep < 1:
        raise ConfigError(f"--keep: must be at least 1 (got {keep})")
    by_version = {(r["P"], r["V"]): r for r in current}
    added, unchanged, replaced, conflicts = [], [], [], []
    for entry in new:
        name = filename(entry)
        old = by_version.get((entry["P"], entry["V"]))
        if old is None:
            added.append(name)
        elif _same_bytes(old, entry):
            unchanged.append(name)
            continue
        elif replace:
            replaced.append(name)
        else:
            conflicts.append(
                f"{where}: {name} is already in the repository with other bytes"
                " (a version is never changed in place; bump pkgrel, or pass --replace)"
            )
            continue
        by_version[(entry["P"], entry["V"])] = entry
    if conflicts:
        raise ConfigError(*conflicts)
    names: dict[str, list[Record]] = defaultdict(list)
    for entry in by_version.values():
        names[entry["P"]].append(entry)
    records, pruned = [], []
    for versions in names.values():
        versions.sort(key=lambda r: version_key(r["V"]), reverse=True)
        records += versions[:keep]
        pruned += [filename(r) for r in versions[keep:]]
    new_names = {filename(r) for r in new}
    pruned_new = sorted(new_names & set(pruned))
    if pruned_new:
        raise ConfigError(
            f"{where}: {', '.join(pruned_new)} would be pruned at once: newer versions of it"
            f" fill --keep {keep}"
        )
    return Merge(
        tuple(records),
        tuple(sorted(added)),
        tuple(sorted(unchanged)),
        tuple(sorted(replaced)),
        tuple(sorted(pruned)),
        tuple(sorted(filename(r) for r in records)),
    )
