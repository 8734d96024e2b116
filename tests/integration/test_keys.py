from __future__ import annotations

import stat
from pathlib import Path

from pakman import keys
from tests.support.cli import run_bootstrap, run_pakman
from tests.support.workspace import git_workspace


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
