"""tests/README.md says where things are: every helper module is named there, every path it
names exists, and the fast command it gives runs the unit folder."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

README = ROOT / "tests" / "README.md"


def test_every_helper_module_is_in_the_readme() -> None:
    text = README.read_text()
    modules = sorted((ROOT / "tests" / "support").glob("*.py")) + sorted(
        (ROOT / "devkit").glob("*.py")
    )
    missing = [m.name for m in modules if m.name != "__init__.py" and f"`{m.name}`" not in text]
    assert missing == []


def test_every_path_the_readme_names_exists() -> None:
    paths = re.findall(
        r"`((?:tests|devkit|benchmarks|scripts)/[^`: ]*|pyproject\.toml)", README.read_text()
    )
    assert paths, "no path found"
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_the_groups_are_the_folders() -> None:
    groups = re.findall(r"^\| `tests/(\w+)/` \|", README.read_text(), re.M)
    folders = sorted(
        p.name
        for p in (ROOT / "tests").iterdir()
        if p.is_dir() and p.name.islower() and (p / "__init__.py").exists() and p.name != "support"
    )
    assert sorted(groups) == folders == ["integration", "system", "unit"]
