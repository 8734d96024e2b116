"""The GitHub workflows we ship: linted by actionlint, and shaped so deploy re-runs alone."""

from __future__ import annotations

from pathlib import Path

from tests.support.lint import actionlint
from tests.unit.test_workflows import APP_EXAMPLE, V8_EXAMPLE, WORKFLOWS


def test_workflows_pass_actionlint() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in paths} == {"action.yml", "ci.yml", "deployment.yml"}
    result = actionlint(*paths, APP_EXAMPLE, V8_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    assert actionlint(broken).returncode != 0
