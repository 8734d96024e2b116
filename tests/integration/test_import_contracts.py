"""Each import contract fails on the import it forbids: `lint-imports` run on a copy of the
code with one such import planted exits 1 and names the broken contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

# (file, the line planted in it, the contract it breaks, what the report says)
PLANTED = {
    "back-import": (
        "pakman/verify.py",
        "from pakman import cli",
        "pakman is layered",
        "pakman.verify is not allowed to import pakman.cli",
    ),
    "storage-up-to-publish": (
        "pakman/storage/objects.py",
        "from pakman.publish import plan",
        "pakman is layered",
        "pakman.storage.objects -> pakman.publish.plan",
    ),
    "repo-to-publish": (
        "pakman/repo/state.py",
        "from pakman.publish import plan",
        "pakman is layered",
        "pakman.repo.state -> pakman.publish.plan",
    ),
    "dagger": (
        "pakman/digest.py",
        "import dagger",
        "pakman never imports the Dagger SDK or the module",
        "pakman.digest -> dagger",
    ),
    "circle": (
        "pakman/storage/objects.py",
        "from pakman.storage import s3",
        "no import circle",
        "No cycles are allowed in pakman.storage",
    ),
    "unit-to-integration": (
        "tests/unit/test_keys.py",
        "from tests.integration import test_keys",
        "a test group imports only from cheaper ones",
        "tests.unit.test_keys -> tests.integration.test_keys",
    ),
    "module-engine-to-arguments": (
        "pakman_ci/engine.py",
        "from pakman_ci import arguments",
        "the Dagger module's files import one way",
        "pakman_ci.engine is not allowed to import pakman_ci.arguments",
    ),
    "benchmark-to-tests": (
        "benchmarks/sign.py",
        "from tests.support import paths",
        "import nothing from the tests",
        "benchmarks.sign -> tests.support.paths",
    ),
}


def copy_of_the_code(base: Path) -> Path:
    for package in ("pakman", "devkit", "benchmarks", "tests"):
        shutil.copytree(
            ROOT / package,
            base / package,
            ignore=shutil.ignore_patterns("__pycache__", "fixtures", "golden"),
        )
    shutil.copytree(
        ROOT / "ci" / "src" / "pakman_ci",
        base / "pakman_ci",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


def lint_imports(base: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=base,
        env={**os.environ, "PYTHONPATH": str(base)},
        check=False,
        timeout=120,
    )


def test_the_copy_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_code(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_forbidden_import_breaks_its_contract(case: str, tmp_path: Path) -> None:
    path, line, contract, says = PLANTED[case]
    base = copy_of_the_code(tmp_path)
    planted = base / path
    text = planted.read_text()
    # after `from __future__ import annotations`, where an import may stand
    head, _, rest = text.partition("from __future__ import annotations\n")
    planted.write_text(f"{head}from __future__ import annotations\n{line}\n{rest}")
    result = lint_imports(base)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert says in result.stdout, result.stdout
