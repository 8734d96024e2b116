from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pakman import config
from pakman.errors import ConfigError
from tests.support.cli import one_line_error, run_pakman
from tests.support.configs import BAD, GOOD
from tests.support.hostile import PEAK_RSS
from tests.support.paths import V8_CONFIGS


def test_every_v8_config_loads() -> None:
    for path in sorted(V8_CONFIGS.glob("*.yml")):
        cfg = config.load(path)
        assert cfg.dependencies.runtime, path
        assert cfg.build.command.strip(), path


def test_rails_config_is_modelled_completely() -> None:
    cfg = config.load(V8_CONFIGS / "rails.yml")
    assert cfg.type == "default"
    assert cfg.stack == "alpine/3.17"
    assert cfg.alpine_version == "3.17"
    assert cfg.architectures == ("x86_64", "aarch64")
    assert cfg.dependencies.trace is False
    assert cfg.dependencies.build[0] == "ruby"
    assert cfg.build.destinations == ("*", ".bundle")
    assert cfg.build.strip_binary is True
    assert cfg.run is not None
    assert cfg.run.name == "locomo"
    assert [c.name for c in cfg.run.commands] == ["migrate", "console", "logs"]
    assert cfg.run.commands[2].path == "/usr/bin"
    assert cfg.run.commands[0].path is None
    web, worker = cfg.run.services
    assert web.start_call == "server"
    assert web.stop == {"kill": True, "pid_path": "tmp/pids/server.pid"}
    assert worker.start_call == "exec sidekiq -C config/sidekiq.yml"
    assert [name for name, _ in cfg.hooks] == sorted(
        ["post-install", "pre-upgrade", "post-upgrade", "post-deinstall"]
    )
    # kits, sizes, plans, page pass through untouched.
    assert cfg.deployment["page"]["title"] == "SomeApp"
    assert cfg.deployment["plans"][0]["pricings"][0]["amount"] == 1500
    assert set(cfg.deployment) == {"kits", "sizes", "plans", "page"}


def test_config_is_immutable() -> None:
    cfg = config.parse(GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.type = "static"  # type: ignore[misc]


def test_static_adds_nginx_and_needs_no_run() -> None:
    cfg = config.parse("type: static\ndependencies: {runtime: [bash]}\nbuild: {command: make}\n")
    assert cfg.runtime_dependencies == ("bash", "nginx")
    assert cfg.run is None


def test_good_dependency_atoms_are_accepted() -> None:
    cfg = config.parse(GOOD)
    assert "so:libc.musl-x86_64.so.1" in cfg.dependencies.runtime
    assert "!conflict" in cfg.dependencies.runtime


def test_unknown_keys_are_refused_at_every_level_by_full_path() -> None:
    """A misspelt key would drop what it held: the application, the runtime dependencies,
    an architecture. Each is refused by its full path, all at once, with the near key."""
    text = (
        GOOD.replace("destinations:", "destination:")
        .replace("runtime:", "runtme:")
        .replace("start:", "strat:")
    )
    with pytest.raises(ConfigError) as caught:
        config.parse(text + "architecture: [aarch64]\ncolour: blue\n")
    assert set(caught.value.problems) == {
        "instellar.yml: dependencies.runtme: unknown key; did you mean `runtime`?",
        "instellar.yml: build.destination: unknown key; did you mean `destinations`?",
        "instellar.yml: run.services[0].strat: unknown key; did you mean `start`?",
        "instellar.yml: architecture: unknown key; did you mean `architectures`?",
        "instellar.yml: colour: unknown key",
    }


def test_v8_keys_from_before_v7_get_a_way_forward() -> None:
    text = GOOD.replace(
        "  services:", "  process: web\n  command:\n    variations: [a]\n  services:"
    )
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    process, command = caught.value.problems
    assert process.startswith("instellar.yml: run.process: unknown key: a v8 key from before v7")
    assert "run.services entry" in process
    assert command.startswith("instellar.yml: run.command: unknown key: a v8 key from before v7")
    assert "run.commands entry" in command
    with pytest.raises(ConfigError) as caught:
        config.parse(GOOD + "hooks: {post-install: x}\n")
    assert caught.value.problems == (
        "instellar.yml: hooks: unknown key: write hook: (singular) with the apk script names"
        " as keys",
    )


def test_keys_passed_to_the_api_stay_open() -> None:
    """kits, sizes, plans and page belong to the deployment API: their keys are its own."""
    cfg = config.parse(GOOD + "kits: [{name: web, anything: {goes: 1}}]\npage: {x: 1}\n")
    assert cfg.deployment["kits"][0]["anything"] == {"goes": 1}


def test_all_problems_are_reported_at_once() -> None:
    text = GOOD.replace("[nodejs]", "nodejs").replace("binary: app", "binary: 'a b'")
    text += "architectures: [sparc]\nhook: {on-install: x}\n"
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    paths = [line.split(": ")[1] for line in caught.value.problems]
    assert paths == [
        "architectures[0]",
        "dependencies.build",
        "run.services[0].binary",
        "hook.on-install",
    ]
    assert all(line.startswith("instellar.yml: ") for line in caught.value.problems)
    assert "(got 'sparc')" in caught.value.problems[0]


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


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 25


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


# --- hostile input: each one clean error, nothing lost or leaked --------------------------


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
