"""abuild signing keys: check, install, generate and fingerprint.

Key material only ever travels in memory or into files with tight modes;
no error message here quotes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.errors import KeyMaterialError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

KEY_BITS = 4096


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A checked PEM key pair. ``repr`` never shows the private key."""

    private_pem: bytes
    public_pem: bytes

    def __repr__(self) -> str:
        return f"KeyPair(fingerprint={fingerprint(self.public_pem)!r})"


def load_public(pem: bytes, what: str = "public key") -> RSAPublicKey:
    """Parse a PEM RSA public key or raise a clear error naming ``what``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise KeyMaterialError(f"{what}: not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise KeyMaterialError(f"{what}: not an RSA key")
    return key


def load_private(pem: bytes, what: str) -> RSAPrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # cryptography's messages can quote the input; ours never do.
        raise KeyMaterialError(f"{what}: not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyMaterialError(f"{what}: not an RSA key")
    return key


def public_pem_of(private: RSAPrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_pair(
    private_pem: bytes | str,
    public_pem: bytes | str | None = None,
    *,
    private_name: str = "private key",
    public_name: str = "public key",
) -> KeyPair:
    """Parse the pair and check that they match; derive the public key when absent."""
    private_bytes = private_pem.encode() if isinstance(private_pem, str) else private_pem
    if not private_bytes.strip():
        raise KeyMaterialError(f"{private_name}: is empty")
    private = load_private(private_bytes, private_name)
    derived = public_pem_of(private)
    if public_pem is None or not str(public_pem).strip():
        return KeyPair(private_bytes, derived)
    public_bytes = public_pem.encode() if isinstance(public_pem, str) else public_pem
    public = load_public(public_bytes, public_name)
    if public.public_numbers() != private.public_key().public_numbers():
        raise KeyMaterialError(f"{public_name}: does not match {private_name}")
    return KeyPair(private_bytes, public_bytes)


def fingerprint(public_pem: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: stable across PEM formatting."""
    return fingerprint_of(load_public(public_pem))


def fingerprint_of(key: RSAPublicKey) -> str:
    """:func:`fingerprint` of a key already parsed."""
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def generate(bits: int = KEY_BITS) -> KeyPair:
    """A new RSA key pair, as ``abuild-keygen`` makes (PKCS#8 private, SPKI public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(private_pem, public_pem_of(private))


def pair_files(pair: KeyPair, directory: Path, key_name: str) -> dict[Path, tuple[bytes, int]]:
    """``<key_name>`` (0600, from creation) and ``<key_name>.pub`` (0644) in ``directory``."""
    return {
        directory / key_name: (pair.private_pem, 0o600),
        directory / f"{key_name}.pub": (pair.public_pem, 0o644),
    }


def write_pair(pair: KeyPair, directory: Path, key_name: str) -> tuple[Path, Path]:
    """Write the pair (see :func:`pair_files`), both files or neither."""
    from pakman.files import write_all

    write_all(pair_files(pair, directory, key_name))
    return directory / key_name, directory / f"{key_name}.pub"


def abuild_conf(private_key_path: str) -> str:
    """The ``~/.abuild/abuild.conf`` that points abuild at the signing key."""
    return f'PACKAGER_PRIVKEY="{private_key_path}"\n'


def trusted_key_path(apk_keys_dir: Path, key_name: str) -> Path:
    """Where apk trusts the public key: under the name abuild signs with."""
    return apk_keys_dir / f"{key_name}.pub"


def install_files(
    pair: KeyPair, home: Path, apk_keys_dir: Path, key_name: str
) -> dict[Path, tuple[bytes, int]]:
    """abuild signing as v8 set it up: key files and abuild.conf (the user's), and the
    trusted public key (:func:`trusted_key_path`, root's; see :func:`pakman.bootstrap.write`)."""
    abuild_dir = home.absolute() / ".abuild"  # abuild.conf's path is read from elsewhere
    return {
        **pair_files(pair, abuild_dir, key_name),
        abuild_dir / "abuild.conf": (abuild_conf(str(abuild_dir / key_name)).encode(), 0o644),
        trusted_key_path(apk_keys_dir, key_name): (pair.public_pem, 0o644),
    }
