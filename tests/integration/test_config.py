from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devkit.peak_rss import PEAK_RSS
from tests.support.cli import one_line_error, run_pakman
from tests.support.configs import BAD, GOOD


@pytest.mark.parametrize(("case", "text", "expected"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_config_exits_2_with_a_clear_line(
    tmp_path: Path, case: str, text: str, expected: str
) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(textwrap.dedent(text))
    result = run_pakman("check", "--config", str(path))
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert expected in result.stderr, (case, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for line in result.stderr.splitlines():
        assert line.startswith("error: "), line


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text("dependencies:\n  build: [a\nbuild:\n  command: x\n")
    result = run_pakman("check", "--config", str(path))
    assert result.returncode == 2
    assert "error: instellar.yml: line 3: invalid YAML" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_pakman("check", "--config", str(tmp_path / "nope.yml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yml'}: no such file"


def test_check_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(GOOD.replace("destinations:", "destination:"))
    result = run_pakman("check", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        "error: instellar.yml: build.destination: unknown key; did you mean `destinations`?\n"
    )


BASE = "dependencies: {}\nbuild: {command: make}\n"


RUN = "run: {name: app, services: [{name: web, binary: app}]}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + 'run: {name: "app\\n", services: [{name: web, binary: app}]}\n', "run.name"),
        (RUN + 'dependencies: {runtime: ["bash\\n"]}\nbuild: {command: make}\n', "runtime[0]"),
        (RUN + 'dependencies: {}\nbuild: {command: make, destinations: ["x\\n"]}\n', "[0]"),
        (RUN + BASE + 'architectures: ["x86_64\\n"]\n', "architectures[0]"),
        (RUN + BASE + "build: {command: other}\n", "duplicate key 'build' (first on line 3)"),
        ("type: [a]\n" + RUN + BASE, "type: must be one of default, static, custom"),
        (RUN + BASE + "x: " + "[" * 20000 + "]" * 20000 + "\n", "nesting depth"),
        (RUN + BASE + "kits: [web]\n", "kits[0]: must be a mapping with a name"),
        (RUN + BASE + "page: [1]\n", "page: must be a mapping"),
        (RUN + BASE + "kits: [{name: web, at: 2024-01-01}]\n", "kits[0].at: must be a string"),
        (RUN + BASE + "kits: [{name: web, x: " + json.dumps("y" * 300_000) + "}]\n", "KiB"),
    ],
)
def test_hostile_configs_are_one_line_errors(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(text)
    result = run_pakman("check", "--config", str(path), timeout=60)
    one_line_error(result, 2, message)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    path = tmp_path / "instellar.yml"
    path.write_text("\n".join(lines) + "\n" + RUN + BASE + "kits: *i\n")
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "once its aliases are expanded" in result.stderr
    assert int(result.stderr.strip().splitlines()[-1]) < 200 * 1024  # KiB


CONFIG = """\
dependencies: {runtime: [bash]}
build: {command: make, destinations: [bin]}
run:
  name: app
  commands:
    - {name: a, binary: app, call: "migrate\\rnow"}
    - {name: b, binary: app, call: "migrate\\0now"}
    - {name: c, binary: app, call: "migrate\\u2028now"}
    - {name: d, binary: app, call: .inf}
  services: [{name: web, binary: app}]
kits: [{name: web, sizes: [{cpu: .nan}]}]
"""


def test_control_characters_and_non_finite_numbers_are_refused_by_field(tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(CONFIG)
    result = run_pakman("check", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = [
        "run.commands[0].call: must not hold control characters or line separators"
        " (got 'migrate\\rnow')",
        "run.commands[1].call: must not hold control characters or line separators"
        " (got 'migrate\\x00now')",
        "run.commands[2].call: must not hold control characters or line separators"
        " (got 'migrate\\u2028now')",
        "run.commands[3].call: must be a finite number (got inf)",
    ]
    for line in expected:
        assert f"error: instellar.yml: {line}" in lines, result.stderr
    assert any(".cpu: must be a finite number" in line for line in lines), result.stderr
