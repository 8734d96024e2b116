"""The GitHub workflows we ship: linted by actionlint, and shaped so deploy re-runs alone."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests import rig
from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = rig.need_tool("actionlint")
    return subprocess.run([binary, *map(str, paths)], capture_output=True, text=True, cwd=ROOT)


def test_workflows_pass_actionlint() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in paths} == {"ci.yml", "deployment.yml"}
    result = actionlint(*paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    assert actionlint(broken).returncode != 0


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def test_deployment_example_splits_build_and_deploy() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "deployment.yml").read_text())
    build = _steps(workflow, "build")
    dagger_build = next(s for s in build if "dagger-for-github" in s.get("uses", ""))
    assert dagger_build["with"]["call"].startswith("build ")
    assert "export --path packages" in dagger_build["with"]["call"]
    assert "env:ABUILD_PRIVATE_KEY" in dagger_build["with"]["call"]
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in build)
    assert workflow["jobs"]["deploy"]["needs"] == "build"
    deploy = _steps(workflow, "deploy")
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in deploy)
    dagger_deploy = next(s for s in deploy if "dagger-for-github" in s.get("uses", ""))
    assert dagger_deploy["with"]["call"].startswith("deploy ")
    # Secrets travel as environment variables named by env:..., never on the command line.
    assert "secrets." not in dagger_deploy["with"]["call"]


def test_ci_runs_the_engine_checks() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    engine = _steps(workflow, "engine")
    step = next(s for s in engine if "dagger-for-github" in s.get("uses", ""))
    assert step["with"]["verb"] == "check"
    assert "selftest" in step["with"]["args"]
    assert any("setup-qemu" in s.get("uses", "") for s in engine)
