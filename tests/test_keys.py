from __future__ import annotations

import functools
import stat
from pathlib import Path

import pytest

from pakman import keys
from pakman.errors import KeyMaterialError
from pakman.files import write_all
from tests.support.cli import run_bootstrap, run_pakman
from tests.support.workspace import git_workspace


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


def test_keygen_cli_makes_a_4096_bit_pair(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    result = run_pakman("keygen", "--repository", "Acme/My.App", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    private = tmp_path / "acme-my-app.rsa"
    public = tmp_path / "acme-my-app.rsa.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert key.key_size == 4096  # type: ignore[union-attr]
    keys.check_pair(private.read_bytes(), public.read_bytes())
    assert "PRIVATE" not in result.stdout


# --- hostile input: each one clean error, nothing lost or leaked --------------------------


def test_keys_are_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """The temporary is a fresh mkstemp name (O_EXCL): old fixed names lead nowhere."""
    workspace = git_workspace(tmp_path / "ws")
    home = tmp_path / "home"
    (home / ".abuild").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for name in (".upmaru-locomo.rsa.tmp", ".upmaru-locomo.rsa.pub.tmp"):
        (home / ".abuild" / name).symlink_to(victim)
    pair = keys.generate(2048)
    result = run_bootstrap(workspace, home, tmp_path / "apk-keys", pair.private_pem.decode())
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "untouched"
    private = home / ".abuild" / "upmaru-locomo.rsa"
    assert private.read_bytes() == pair.private_pem
    assert private.stat().st_mode & 0o777 == 0o600
    leftovers = [p.name for p in (home / ".abuild").iterdir() if p.name.startswith(".u")]
    assert sorted(leftovers) == [".upmaru-locomo.rsa.pub.tmp", ".upmaru-locomo.rsa.tmp"]
