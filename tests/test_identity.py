from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pakman.errors import ConfigError
from pakman.identity import (
    GitFacts,
    Identity,
    alpine_branch,
    alpine_image_tag,
    git_facts,
    git_probe,
    read_git_probe,
    resolve_alpine,
    slugify,
    version_from_describe,
)
from tests.support import rig
from tests.support.workspace import git_workspace


def test_repository_slugs_like_v8() -> None:
    identity = Identity("Artellectual/artellectual.com")
    assert identity.organization == "artellectual"
    assert identity.name == "artellectual.com"
    assert identity.slug == "artellectual-com"
    assert identity.apk_dir == ".apk/artellectual/artellectual.com"
    assert identity.key_name == "artellectual-artellectual-com.rsa"
    assert slugify("My_App--Two") == "my-app-two"


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),  # v8 gave 0.0.0 here: fixed
        ("v1.2.3-4-gabc1234", "1.2.3"),
        ("2.0.0_rc1", "2.0.0_rc1"),
        ("1.2", "1.2"),
        ("abc1234", "0.0.0"),
        ("1234567", "0.0.0"),  # an all-digit short hash is not a version
        ("release-1", "0.0.0"),
        ("1.2.3beta", "0.0.0"),
        ("", "0.0.0"),
    ],
)
def test_version_from_git_describe(described: str, expected: str) -> None:
    assert version_from_describe(described) == expected


def test_version_and_epoch_from_a_real_git_repository(tmp_path: Path) -> None:
    assert git_facts(tmp_path) == GitFacts()  # not a repository at all
    repo = git_workspace(tmp_path / "repo", config=None)
    assert git_facts(repo).version == "0.0.0"  # a commit, no tag: a bare hash
    assert git_facts(repo).epoch == 1704164645  # 2024-01-02T03:04:05Z
    subprocess.run(["git", "-C", str(repo), "tag", "v2.5.1"], check=True)
    assert git_facts(repo).version == "2.5.1"


@pytest.mark.parametrize(
    ("given", "branch", "tag"),
    [
        ("3.20", "v3.20", "3.20"),
        ("v3.20", "v3.20", "3.20"),
        ("edge", "edge", "edge"),
        ("latest-stable", "latest-stable", "latest"),
        ("3.9", "v3.9", "3.9"),
    ],
)
def test_alpine_versions_normalise(given: str, branch: str, tag: str) -> None:
    assert alpine_branch(given) == branch
    assert alpine_image_tag(branch) == tag


def test_alpine_resolution_order() -> None:
    assert resolve_alpine("edge", "3.18") == "edge"
    assert resolve_alpine(None, "3.18") == "v3.18"
    assert resolve_alpine("", None) == "v3.23"  # pinned, not a moving target
    with pytest.raises(ConfigError, match="alpine: not an Alpine version"):
        resolve_alpine("bookworm", None)


@pytest.mark.parametrize("repository", ["acme", "acme/app/x", "ac me/app", "acme/a$b", "-acme/app"])
def test_bad_repository_is_rejected(repository: str) -> None:
    with pytest.raises(ConfigError, match="repository: must be owner/name"):
        Identity(repository)


def test_bad_version_is_rejected() -> None:
    with pytest.raises(ConfigError, match="version: not a valid Alpine pkgver"):
        Identity("acme/app", version="1.0-beta")


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


def test_the_probe_is_what_the_dagger_module_runs_too() -> None:
    script = git_probe("/src")
    assert "-C /src" in script
    assert read_git_probe(
        "describe=v2.0.1-3-gabcdef0\nepoch=1700000000\nhead=" + "a" * 40 + "\nchanges=2\n"
    ) == GitFacts("2.0.1", 1700000000, "a" * 40 + "-dirty")
    assert read_git_probe("describe=\nepoch=\nhead=\nchanges=0\n") == GitFacts()
