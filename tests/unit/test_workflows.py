"""The GitHub workflows we ship: linted by actionlint, and shaped so deploy re-runs alone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import docpages
from tests.support.paths import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
# The workflow an application repository copies.
APP_EXAMPLE = ROOT / "examples" / "github" / "deployment.yml"
# v8's own workflow, on the action of PAKman 9.
V8_EXAMPLE = ROOT / "examples" / "github" / "v8-deployment.yml"


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def _dagger_calls(path: Path) -> dict[str, dict[str, Any]]:
    """Each job's dagger-for-github step inputs."""
    workflow = yaml.safe_load(path.read_text())
    return {
        job: next(s for s in _steps(workflow, job) if "dagger-for-github" in s.get("uses", ""))[
            "with"
        ]
        for job in workflow["jobs"]
    }


@pytest.mark.parametrize("path", [APP_EXAMPLE, WORKFLOWS / "deployment.yml"])
def test_deployment_splits_build_and_deploy(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    build = _steps(workflow, "build")
    calls = _dagger_calls(path)
    assert calls["build"]["call"].startswith("build ")
    assert "export --path packages" in calls["build"]["call"]
    assert "env:ABUILD_PRIVATE_KEY" in calls["build"]["call"]
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in build)
    assert workflow["jobs"]["deploy"]["needs"] == "build"
    deploy = _steps(workflow, "deploy")
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in deploy)
    assert calls["deploy"]["call"].startswith("deploy ")
    # Secrets travel as environment variables named by env:..., never on the command line.
    for call in calls.values():
        assert "secrets." not in call["call"]


def test_the_app_example_calls_the_module_remotely_on_the_apps_own_source() -> None:
    """Called remotely, the module's default source is its own repository: --source . it is."""
    workflow = yaml.safe_load(APP_EXAMPLE.read_text())
    module = workflow["env"]["PAKMAN_MODULE"]
    assert module.startswith("github.com/upmaru/pakman@")
    assert module != "github.com/upmaru/pakman@v9"  # no such tag
    for call in _dagger_calls(APP_EXAMPLE).values():
        assert call["module"] == "${{ env.PAKMAN_MODULE }}"
        assert " --source . " in f" {call['call']} "
        assert "--repository ${{ github.repository }}" in call["call"]
    build = _steps(workflow, "build")
    assert build[0]["with"]["fetch-depth"] == 0  # git describe needs the tags


def test_this_repositorys_example_names_its_package_and_version() -> None:
    """examples/hello's run.name is hello, and the folder carries no .git for a version."""
    for call in _dagger_calls(WORKFLOWS / "deployment.yml").values():
        assert "--source examples/hello" in call["call"]
        assert "--repository ${{ github.repository_owner }}/hello" in call["call"]
    assert "--version 1.0." in _dagger_calls(WORKFLOWS / "deployment.yml")["build"]["call"]


def test_readme_calls_the_module_remotely_with_a_source() -> None:
    """Called remotely, a function's default --source is the module's own repository."""
    from tests.unit.test_dagger_module import FUNCTIONS

    takes_source = {
        name
        for name, fn in FUNCTIONS.items()
        if any(p.name == "source" and p.default_path for p in fn.parameters.values())
    }
    assert {"build", "bootstrap"} <= takes_source
    called: dict[str, int] = {}
    for name, text in docpages.pages().items():
        # @v9 is the GitHub Action's tag (v8's workflows); the module is called at a commit.
        assert "-m github.com/upmaru/pakman@v9" not in text, name
        remote = "M=github.com/upmaru/pakman@main" in text  # then `-m $M` is remote too
        module = r"(?:github\.com/\S+|\$M)" if remote else r"github\.com/\S+"
        for line in text.splitlines():
            found = re.search(rf"dagger (?:call )?-m {module} (?:--\S+ \S+ )*([a-z-]+)", line)
            if found and found.group(1) in takes_source:
                called[name] = called.get(name, 0) + 1
                block = text[text.index(line) : text.index(line) + 400]
                assert "--source" in block, f"{name}: {line}"
    assert called["README.md"] >= 1  # the main job, on the first screen
    assert called["dagger.md"] >= 6  # every function that takes a source


def test_ci_runs_the_engine_checks() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    engine = _steps(workflow, "engine")
    steps = [s["with"] for s in engine if "dagger-for-github" in s.get("uses", "")]
    checks = next(s for s in steps if s.get("verb") == "check")
    assert (checks["module"], checks["args"]) == ("ci/tests", "selftest")
    called = next(s for s in steps if s.get("call", "").startswith("check "))
    assert "--source examples/hello" in called["call"]  # the repo root has no instellar.yml
    assert any("setup-qemu" in s.get("uses", "") for s in engine)


def test_no_workflow_passes_inputs_dagger_for_github_ignores() -> None:
    """v8.4.0 has no engine-stop input: it only warns, and the engine outlives the step."""
    for path in [*WORKFLOWS.glob("*.yml"), ROOT / "examples" / "github" / "deployment.yml"]:
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"]:
            for step in _steps(workflow, job):
                if "dagger-for-github" in step.get("uses", ""):
                    assert "engine-stop" not in step.get("with", {}), (path.name, job)


def test_v8s_workflow_needs_only_its_tag_changed() -> None:
    """examples/github/v8-deployment.yml is v8's README workflow with @v8 changed to @v9."""
    v8 = (ROOT / "tests" / "fixtures" / "v8-workflow" / "deployment.yml").read_text()
    ours = V8_EXAMPLE.read_text()
    body = v8[v8.index("name: ") :]
    assert body.count("uses: upmaru/pakman@v8") == 2
    assert ours[ours.index("name: ") :] == body.replace("upmaru/pakman@v8", "upmaru/pakman@v9")


def test_migration_docs_reduce_to_the_tag() -> None:
    """The README's and the docs' migration both say: change @v8 to @v9, nothing else."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Migrating from PAKman v8") :]
    section = section[: section.index("\n## ", 5)]
    docs = (ROOT / "docs" / "migrating-from-v8.md").read_text()
    actions = readme[readme.index("## GitHub Actions") :]
    assert "`uses: upmaru/pakman@v9`" in actions[: actions.index("```")]
    assert yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["using"] == "composite"
    for text in (" ".join(section.split()), " ".join(docs.split())):
        assert "`uses: upmaru/pakman@v8` to `uses: upmaru/pakman@v9`" in text
        assert "nothing else" in text
        assert "docs/github-actions.md" in text or "github-actions.md" in text
