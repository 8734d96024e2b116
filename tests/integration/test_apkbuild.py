"""The rendered build files as abuild uses them, for every v8 fixture and every package type.

abuild itself cannot be installed here, so its steps are run the way it runs them: the
APKBUILD sourced by real busybox ash in the Alpine root, ``snapshot`` with GNU tar, and
``package`` over a ``$srcdir`` laid out as abuild lays it out (the unpacked snapshot plus a
link to every source file).
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from pakman import config, render
from pakman.identity import Identity
from tests.support import rig
from tests.support.workspace import git_workspace


def test_snapshot_tars_the_application_only(tmp_path: Path) -> None:
    """GNU tar as abuild snapshot runs it: no .git, no .apk, no '../' members, no warning."""
    tar = rig.need_tool("tar")
    rig.need(
        "GNU tar" in subprocess.run([tar, "--version"], capture_output=True, text=True).stdout,
        "snapshot needs GNU tar",
    )
    workspace = git_workspace(tmp_path / "ws", "rails")
    (workspace / "app").mkdir()
    (workspace / "app" / "main.rb").write_text("puts 1\n")
    cfg = config.load(workspace / "instellar.yml")
    identity = Identity("upmaru/locomo", "2.3.4", 9, source_date_epoch=1704164645)
    startdir = workspace / identity.apk_dir
    render.write(render.render(cfg, identity), startdir)
    # abuild's clean, deps and checksum are not what is tested here.
    script = "abuild() { :; }; . ./APKBUILD; snapshot"
    result = subprocess.run(
        ["sh", "-c", f"startdir=$PWD; {script}"],
        cwd=startdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    with tarfile.open(startdir / "locomo-2.3.4.tar") as archive:
        members = archive.getmembers()
    names = sorted(m.name.removeprefix("./") for m in members if m.name != ".")
    assert names == ["app", "app/main.rb", "instellar.yml"]
    assert {m.mtime for m in members} == {1704164645}
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
