"""PAKman's GitHub Action: its metadata against GitHub's schema, the workflows that use it
through actionlint, and its own shell steps (action/*.sh) run for real where they can."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support import rig, runner
from tests.support.paths import ROOT

ACTION = ROOT / "action.yml"
V8_EXAMPLE = ROOT / "examples" / "github" / "v8-deployment.yml"
SCRIPTS = sorted((ROOT / "action").glob("*.sh"))


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = rig.need_tool("check-jsonschema")
    command = [tool, "--builtin-schema", "vendor.github-actions", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_action_metadata_passes_githubs_schema(tmp_path: Path) -> None:
    result = check_jsonschema(ACTION)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "action.yml"
    metadata = yaml.safe_load(ACTION.read_text())
    metadata["runs"]["steps"][0].pop("shell")  # a composite run step must name its shell
    broken.write_text(yaml.safe_dump(metadata))
    assert check_jsonschema(broken).returncode != 0


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


def test_the_scripts_pass_shellcheck() -> None:
    tool = rig.need_tool("shellcheck")
    assert [p.name for p in SCRIPTS] == ["install.sh", "prepare.sh"]
    result = subprocess.run([tool, *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_workflows_using_the_action_pass_actionlint(tmp_path: Path) -> None:
    from tests.support.lint import actionlint

    uses_it = ROOT / ".github" / "workflows" / "action.yml"
    result = actionlint(V8_EXAMPLE, uses_it)
    assert result.returncode == 0, result.stdout + result.stderr
    # actionlint reads the local action's inputs: an input it does not have is an error.
    wrong = tmp_path / ".github" / "workflows" / "wrong.yml"
    wrong.parent.mkdir(parents=True)
    wrong.write_text(uses_it.read_text().replace("alpine: ${{ matrix.alpine }}", "alpne: v3.20"))
    shutil.copy(ACTION, tmp_path / "action.yml")
    (tmp_path / ".git").mkdir()  # actionlint finds local actions from the repository's root
    failed = subprocess.run(
        [rig.need_tool("actionlint"), str(wrong)], capture_output=True, text=True, cwd=tmp_path
    )
    assert failed.returncode != 0
    assert 'input "alpne" is not defined' in failed.stdout


# --- action/prepare.sh, as the runner runs it (before the chroot) ------------------------


def prepare(
    tmp_path: Path, alpine: str, arch: str = "X64", source: Path = ROOT
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output = tmp_path / "github-output"
    output.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "ALPINE": alpine,
        "RUNNER_ARCH": arch,
        "ACTION_PATH": str(source),
        "GITHUB_OUTPUT": str(output),
    }
    done = subprocess.run(
        [str(ROOT / "action" / "prepare.sh")], capture_output=True, text=True, env=env
    )
    pairs = (line.split("=", 1) for line in output.read_text().splitlines())
    return done, dict(pairs)


@pytest.mark.parametrize(
    ("given", "branch"),
    [("3.20", "v3.20"), ("v3.18", "v3.18"), ("edge", "edge"), ("latest-stable", "latest-stable")],
)
def test_prepare_normalises_the_alpine_version_as_v8_did(
    tmp_path: Path, given: str, branch: str
) -> None:
    done, outputs = prepare(tmp_path, given)
    assert done.returncode == 0, done.stderr
    from pakman import __version__

    assert outputs["branch"] == branch
    assert outputs["arch"] == "x86_64"
    assert outputs["version"] == __version__
    assert outputs["cache-key"].startswith(f"pakman-{__version__}-")
    assert outputs["cache-key"].endswith(f"-alpine-{branch}-x86_64")
    assert outputs["apk-tools-url"].endswith(
        "/x86_64/apk.static#!sha256!34bb1a96f0258982377a289392d4ea9f3f4b767a4bb5806b1b87179b79ad8a1c"
    )
    # The folders the chroot mounts, as v8's action made them.
    assert all((tmp_path / "home" / d).is_dir() for d in ("packages", "artifacts", ".pakman"))


@pytest.mark.parametrize("given", ["3", "v3", "3.20.1", "stable", "3.x", "v3.20;rm", ""])
def test_prepare_refuses_what_is_not_an_alpine_version(tmp_path: Path, given: str) -> None:
    done, outputs = prepare(tmp_path, given)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: alpine: must be edge, latest-stable, v3.x or 3.x (got '{given}')"
    ]
    assert outputs == {}


def test_prepare_picks_the_runners_own_arch(tmp_path: Path) -> None:
    done, outputs = prepare(tmp_path, "3.20", "ARM64")
    assert done.returncode == 0, done.stderr
    assert outputs["arch"] == "aarch64"
    assert "/aarch64/apk.static#!sha256!" in outputs["apk-tools-url"]
    assert outputs["cache-key"].endswith("-alpine-v3.20-aarch64")
    done, _ = prepare(tmp_path, "3.20", "X86")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: runner.arch: PAKman's action runs on X64 and ARM64 runners (got 'X86')"
    )


def test_the_cache_key_follows_the_sources(tmp_path: Path) -> None:
    """A branch such as @main changes under one version: its cache must not be reused."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "pakman", source / "pakman", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", source)
    _, before = prepare(tmp_path, "3.20", source=source)
    _, again = prepare(tmp_path, "3.20", source=source)
    (source / "pakman" / "cli.py").write_text("# changed\n", encoding="utf-8")
    _, after = prepare(tmp_path, "3.20", source=source)
    assert before["cache-key"] == again["cache-key"] != after["cache-key"]
    assert after["cache-key"].startswith(f"pakman-{before['version']}-")


# --- action/install.sh, in the Alpine chroot as the runner user --------------------------


@pytest.mark.alpine
def test_install_puts_the_cached_pakman_on_path_for_the_runner_user(
    alpine: rig.Overlay,
) -> None:
    """With the cache restored (here: this checkout's own environment), install.sh puts the
    runner user in the abuild group (abuild -r needs it) and pakman on every step's PATH.
    (Installing from scratch downloads from PyPI: the action workflow runs that on GitHub.)"""
    runner.prepare(alpine)
    alpine.bind(ROOT / "action", "/action", readonly=True)
    env = {"PAKMAN_SOURCE": "/", "PAKMAN_VENV": sys.prefix}
    alpine.run("rm /usr/local/bin/pakman")  # the rig's own, so only install.sh's counts
    done = runner.as_user(alpine, "runner", "/action/install.sh", env)
    from pakman import __version__

    assert done.stdout.strip() == f"pakman {__version__}"
    linked = alpine.run("readlink /usr/local/bin/pakman; id -nG runner").stdout.split("\n")
    assert linked[0] == f"{sys.prefix}/bin/pakman"
    assert "abuild" in linked[1].split()
    again = runner.as_user(alpine, "runner", "/action/install.sh", env)  # a second use
    assert again.stdout.strip() == f"pakman {__version__}"
    # A later step, a new login as alpine.sh makes, finds it on PATH.
    later = runner.as_user(alpine, "runner", "command -v pakman && pakman --version")
    assert later.stdout.splitlines() == ["/usr/local/bin/pakman", f"pakman {__version__}"]


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


# --- installable for real ----------------------------------------------------------------


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
    texts = [ROOT / "README.md", ROOT / "docs" / "migrating-from-v8.md"]
    lines = [
        match for path in texts for match in re.findall(r"pip install ([^`&]+)", path.read_text())
    ]
    assert lines
    for line in lines:
        target = line.split()[0]
        assert target in {"upmaru-pakman", "git+https://github.com/upmaru/pakman@main"}, line
