from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pakman.identity import (
    GitFacts,
    git_facts,
)
from tests.support import rig
from tests.support.workspace import git_workspace


def test_version_and_epoch_from_a_real_git_repository(tmp_path: Path) -> None:
    assert git_facts(tmp_path) == GitFacts()  # not a repository at all
    repo = git_workspace(tmp_path / "repo", config=None)
    assert git_facts(repo).version == "0.0.0"  # a commit, no tag: a bare hash
    assert git_facts(repo).epoch == 1704164645  # 2024-01-02T03:04:05Z
    subprocess.run(["git", "-C", str(repo), "tag", "v2.5.1"], check=True)
    assert git_facts(repo).version == "2.5.1"


def test_git_commit_is_dirty_only_for_changed_tracked_files(tmp_path: Path) -> None:
    """abuild records the commit in .PKGINFO; the rendered .apk/ files must not make it dirty."""
    repo = git_workspace(tmp_path / "repo")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_facts(repo).commit == head
    (repo / ".apk" / "upmaru" / "locomo").mkdir(parents=True)
    (repo / ".apk" / "upmaru" / "locomo" / "APKBUILD").write_text("pkgname=x\n")
    (repo / "node_modules").mkdir()
    (repo / "node_modules" / "x.js").write_text("untracked build input\n")
    assert git_facts(repo).commit == head
    (repo / "instellar.yml").write_text("changed: true\n")
    assert git_facts(repo).commit == f"{head}-dirty"
    assert git_facts(tmp_path / "not-a-repo").commit == ""


def test_git_facts_read_a_checkout_owned_by_another_user(tmp_path: Path) -> None:
    """A container's mount or a runner's volume: git calls that ownership dubious."""
    rig.need(os.geteuid() == 0, "needs root to hand the checkout to another user")
    repo = git_workspace(tmp_path / "repo", config=None, tag="v1.4.2")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    facts = git_facts(repo)
    assert facts.version == "1.4.2"
    assert len(facts.commit) == 40
    # And it changed no git config of the user running it.
    assert (
        "safe.directory"
        not in subprocess.run(
            ["git", "config", "--global", "--list"], capture_output=True, text=True
        ).stdout
    )
