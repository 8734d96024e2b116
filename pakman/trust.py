"""The public keys packages are verified against, read and parsed once per run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.errors import ConfigError
from pakman.identity import Identity

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


@dataclass(frozen=True)
class Trust:
    """The public keys packages are verified against before they are merged or shipped.

    Verification is required: only ``skip`` (``--no-verify``, ``skip_verify``) ships
    unverified packages. v8's ``push`` never verified, so for it alone a missing key is
    a warning (``required=False``). Each key is parsed once, when first used, and every
    step of the run (verify, the index's signature, the key published beside a
    repository) takes it from here.
    """

    keys: Mapping[str, bytes] = field(default_factory=dict)  # PEM by file name
    skip: bool = False
    required: bool = True

    @cached_property
    def public(self) -> Mapping[str, RSAPublicKey]:
        """The parsed keys by file name: apk matches a signature to a key by its name."""
        from pakman.keys import load_public

        if not self.keys:
            raise ConfigError("--key: at least one trusted public key is required")
        return {name: load_public(pem, f"--key: {name}") for name, pem in self.keys.items()}

    @cached_property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the first key, as deployments record it."""
        from pakman.keys import fingerprint_of

        return "sha256:" + fingerprint_of(next(iter(self.public.values())))

    def check(self) -> None:
        """Refuse, before anything is read, a run that must verify but has no key."""
        if self.required and not self.skip and not self.keys:
            raise ConfigError(
                "--key: a trusted public key is required to verify packages"
                " (or skip verification explicitly with --no-verify)"
            )


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
