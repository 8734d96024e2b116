"""PAKman's GitHub Action: its metadata against GitHub's schema, the workflows that use it
through actionlint, and its own shell steps (action/*.sh) run for real where they can."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.support import docpages
from tests.support.paths import ROOT

ACTION = ROOT / "action.yml"


SCRIPTS = sorted((ROOT / "action").glob("*.sh"))


def _steps() -> list[dict[str, object]]:
    steps: list[dict[str, object]] = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    return steps


def test_the_action_is_v8s_interface_with_pinned_actions() -> None:
    metadata = yaml.safe_load(ACTION.read_text())
    assert list(metadata["inputs"]) == ["alpine"]  # v8's one input
    assert metadata["inputs"]["alpine"]["required"] is True
    uses = [str(s["uses"]) for s in _steps() if "uses" in s]
    assert [u.split("@")[0] for u in uses] == ["jirutka/setup-alpine", "actions/cache"]
    for used in uses:
        assert len(used.split("@")[1].split()[0]) == 40, used  # a commit sha
    setup = next(s for s in _steps() if str(s.get("uses", "")).startswith("jirutka/"))
    assert isinstance(setup["with"], dict)
    packages = str(setup["with"]["packages"]).split()
    assert {"alpine-sdk", "zip", "tar", "sudo", "coreutils", "cmake", "python3"} <= set(packages)
    # Every shell step of its own is a script in action/, so shellcheck and these tests run it.
    for step in _steps():
        if "run" in step:
            assert str(step["run"]).strip("'\"").split("/action/")[1] in {p.name for p in SCRIPTS}


def test_the_action_mounts_what_prepare_makes_and_installs_its_own_checkout() -> None:
    text = ACTION.read_text()
    assert "jirutka/setup-alpine@ae3b3ddba35054804fc4a3507b519fa7e8152050 # v1.4.1" in text
    assert "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5" in text
    setup = next(s for s in _steps() if str(s.get("uses", "")).startswith("jirutka/"))
    assert isinstance(setup["with"], dict)
    volumes = str(setup["with"]["volumes"]).split()
    assert volumes == ["/home/runner/packages", "/home/runner/artifacts", "/home/runner/.pakman"]
    cache = next(s for s in _steps() if str(s.get("uses", "")).startswith("actions/cache"))
    assert cache["with"] == {"path": "~/.pakman", "key": "${{ steps.prepare.outputs.cache-key }}"}
    install = next(s for s in _steps() if "install.sh" in str(s.get("run", "")))
    assert install["shell"] == "alpine.sh {0}"
    assert install["env"] == {
        "PAKMAN_SOURCE": "${{ github.action_path }}",
        "PAKMAN_VENV": "/home/runner/.pakman/venv",
    }
    # install.sh refuses the Pythons pyproject.toml refuses.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert "sys.version_info < (3, 11)" in (ROOT / "action" / "install.sh").read_text()


def test_version_changelog_and_license_agree() -> None:
    """The version is the tag's (v9.0.0): pyproject.toml, pakman.__version__ and the
    CHANGELOG's top entry say the same; the LICENSE is the license pyproject declares."""
    from pakman import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    top = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert top is not None
    assert project["version"] == __version__ == top.group(1)
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_install_lines_install_this_project() -> None:
    """`pip install pakman` is somebody else's project on PyPI: ours is upmaru-pakman."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "upmaru-pakman"
    assert project["scripts"] == {"pakman": "pakman.cli:run"}
    texts = docpages.pages().values()  # README.md and every docs/ page
    lines = [match for text in texts for match in re.findall(r"pip install ([^`&]+)", text)]
    assert len(lines) >= 3  # the README's two, cli.md's, migrating-from-v8.md's
    for line in lines:
        target = line.split()[0]
        assert target in {"upmaru-pakman", "git+https://github.com/upmaru/pakman@main"}, line
