from __future__ import annotations

import pytest

from pakman.errors import ConfigError
from pakman.identity import (
    GitFacts,
    Identity,
    alpine_branch,
    alpine_image_tag,
    git_probe,
    read_git_probe,
    resolve_alpine,
    slugify,
    version_from_describe,
)


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


def test_the_probe_is_what_the_dagger_module_runs_too() -> None:
    script = git_probe("/src")
    assert "-C /src" in script
    assert read_git_probe(
        "describe=v2.0.1-3-gabcdef0\nepoch=1700000000\nhead=" + "a" * 40 + "\nchanges=2\n"
    ) == GitFacts("2.0.1", 1700000000, "a" * 40 + "-dirty")
    assert read_git_probe("describe=\nepoch=\nhead=\nchanges=0\n") == GitFacts()
