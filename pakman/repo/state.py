"""What a repository remembers beyond its index: when each package left the index (the
prune grace period counts from then) and which ones a run is deleting now.

It travels inside the signed ``APKINDEX.tar.gz`` as one more member (apk reads only
``DESCRIPTION`` and ``APKINDEX``), so it is written by the index's own conditional
write: the index and its state never disagree, and only the key holder can change it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pakman.errors import VerificationError

MEMBER = "PAKMAN-STATE"
# A run deletes a package only this long after it marked it; another run that wants the
# package back waits for the mark to go, or for it to expire (its deleter died).
LEASE = 600.0


@dataclass
class State:
    """File names of packages no index lists, with Unix times."""

    dropped: dict[str, float] = field(default_factory=dict)  # left the index at
    deleting: dict[str, float] = field(default_factory=dict)  # marked for deletion at

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"format": 1, "dropped": self.dropped, "deleting": self.deleting},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def active(self, name: str, now: float) -> bool:
        """Whether a run may still be deleting ``name``."""
        marked = self.deleting.get(name)
        return marked is not None and now - marked < LEASE


def parse(data: bytes | None, where: str) -> State:
    """The state member of an index whose signature was checked; none: an empty state."""
    if not data:
        return State()
    try:
        raw = json.loads(data)
        return State(
            {str(k): float(v) for k, v in raw["dropped"].items()},
            {str(k): float(v) for k, v in raw["deleting"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VerificationError(f"{where}: its {MEMBER} member is not pakman's state") from None
