from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests.support import rig
from tests.support.paths import V8_CONFIGS, V8_REPOSITORIES
from tests.unit.test_render import rendered


def _shell_for(path: str) -> str:
    if path.endswith((".run", ".environment", ".env-exec")):
        return "bash"
    return "sh"


def _shellcheck(files: dict[str, render.RenderedFile], tmp: Path, *extra: str) -> list[str]:
    shellcheck = rig.need_tool("shellcheck")
    failures = []
    for path, (text, _) in files.items():
        shell = _shell_for(path)
        target = tmp / path
        target.write_text(text)
        result = subprocess.run(
            [shellcheck, "-s", shell, *extra, str(target)], capture_output=True, text=True
        )
        if result.returncode != 0:
            failures.append(result.stdout)
    return failures


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_shellcheck_templates_strictly(name: str, tmp_path: Path) -> None:
    """Our templates pass shellcheck in full; user shell text is blanked for this check."""
    cfg = config.load(V8_CONFIGS / f"{name}.yml")
    blank = dataclasses.replace(
        cfg,
        build=dataclasses.replace(cfg.build, command=":"),
        package=":" if cfg.package else None,
        hooks=tuple((hook, ":") for hook, _ in cfg.hooks),
    )
    files = render.render(blank, Identity(V8_REPOSITORIES[name], version="1.0.0"))
    assert _shellcheck(files, tmp_path) == []


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_shellcheck_with_user_text_has_no_errors(name: str, tmp_path: Path) -> None:
    assert _shellcheck(rendered(name), tmp_path, "-S", "error") == []


def test_shellcheck_rig_catches_a_broken_template(tmp_path: Path) -> None:
    broken = {"x.run": render.RenderedFile("#!/bin/bash\necho $(\n", 0o755)}
    assert _shellcheck(broken, tmp_path) != []
