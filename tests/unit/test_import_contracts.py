"""The import contracts of pyproject.toml ([tool.importlinter]) hold on the code as it is."""

from __future__ import annotations

import pytest
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

from tests.support.paths import ROOT


def test_the_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    configuration.configure()
    kept = lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report
    assert "0 broken" in report, report
