"""What is being published: the package identity and the commit it came from, and the
storage prefix and manifest key that follow from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pakman.errors import ConfigError
from pakman.identity import Identity, build_number

MANIFEST = "manifest.json"


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

    @classmethod
    def resolve(
        cls,
        repository: str | None,
        sha: str | None,
        ref: str | None = None,
        build: str | int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Deployment:
        """From arguments, then v8's variables (``WORKFLOW_SHA``, ``GITHUB_*``)."""
        env = env or {}
        repository = repository or env.get("GITHUB_REPOSITORY")
        if not repository:
            raise ConfigError("--repository: required (or set GITHUB_REPOSITORY), e.g. acme/app")
        number = build if build not in (None, "") else env.get("GITHUB_RUN_NUMBER")
        return cls(
            identity=Identity(repository, build=build_number(number)),
            sha=sha or env.get("WORKFLOW_SHA") or env.get("GITHUB_SHA") or "",
            ref=ref or env.get("WORKFLOW_REF") or env.get("GITHUB_REF") or "",
        )

    @property
    def prefix(self) -> str:
        return f"deployments/{self.identity.organization}/{self.identity.slug}/{self.sha}/"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST
