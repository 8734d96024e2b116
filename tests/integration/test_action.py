"""PAKman's GitHub Action: its metadata against GitHub's schema, the workflows that use it
through actionlint, and its own shell steps (action/*.sh) run for real where they can."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.support import rig
from tests.support.paths import ROOT
from tests.unit.test_action import ACTION, SCRIPTS

V8_EXAMPLE = ROOT / "examples" / "github" / "v8-deployment.yml"


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
