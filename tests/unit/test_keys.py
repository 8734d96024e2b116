from __future__ import annotations

import functools
import stat
from pathlib import Path

import pytest

from pakman import keys
from pakman.errors import KeyMaterialError
from pakman.files import write_all


@functools.cache
def pair(bits: int = 2048, seed: int = 0) -> keys.KeyPair:
    return keys.generate(bits)


def test_install_writes_v8_layout(tmp_path: Path) -> None:
    kp = pair()
    written = write_all(
        keys.install_files(kp, tmp_path / "home", tmp_path / "apk-keys", "acme-app.rsa")
    )
    abuild = tmp_path / "home" / ".abuild"
    private = abuild / "acme-app.rsa"
    assert private in written
    assert private.read_bytes() == kp.private_pem
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (abuild / "acme-app.rsa.pub").read_bytes() == kp.public_pem
    assert (tmp_path / "apk-keys" / "acme-app.rsa.pub").read_bytes() == kp.public_pem
    assert (abuild / "abuild.conf").read_text() == f'PACKAGER_PRIVKEY="{private}"\n'


def test_public_key_is_derived_when_absent() -> None:
    kp = pair()
    assert keys.check_pair(kp.private_pem, None).public_pem == kp.public_pem


def test_mismatched_pair_is_rejected_without_key_material() -> None:
    other = keys.generate(2048)
    with pytest.raises(KeyMaterialError) as caught:
        keys.check_pair(pair().private_pem, other.public_pem)
    assert str(caught.value) == "public key: does not match private key"


def test_invalid_pem_is_rejected_without_echoing_it() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(KeyMaterialError) as caught:
        keys.check_pair(secret)
    assert "TOPSECRET" not in str(caught.value)
    assert "not an unencrypted PEM private key" in str(caught.value)
    with pytest.raises(KeyMaterialError, match="public key: not a PEM public key"):
        keys.check_pair(pair().private_pem, "garbage")


def test_repr_hides_the_private_key() -> None:
    assert "PRIVATE" not in repr(pair())
    assert repr(pair()).startswith("KeyPair(fingerprint=")


def test_fingerprint_ignores_pem_formatting() -> None:
    kp = pair()
    assert keys.fingerprint(kp.public_pem) == keys.fingerprint(
        kp.public_pem.replace(b"\n", b"\r\n")
    )
    assert len(keys.fingerprint(kp.public_pem)) == 64


# --- hostile input: each one clean error, nothing lost or leaked --------------------------
