from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from pakman import config
from pakman.errors import ConfigError
from tests.support.cli import run_pakman
from tests.support.paths import V8_CONFIGS

GOOD = """
dependencies:
  build: [nodejs]
  runtime: [bash, so:libc.musl-x86_64.so.1, cmd:curl, "ruby>=3.2", "!conflict", "libstdc++"]
build:
  command: make
  destinations: [dist]
run:
  name: app
  services:
    - name: web
      binary: app
      start:
        call: serve
"""


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


# (case, instellar.yml text, the dotted path the one-line error must name)
BAD = [
    ("broken-yaml", "dependencies: [a\nbuild: {command: x}\n", "line 2"),
    ("empty", "", "the file is empty"),
    ("top-level-list", "- a\n- b\n", "the top level must be a mapping"),
    ("top-level-string", "hello\n", "the top level must be a mapping"),
    ("no-dependencies", GOOD.replace("dependencies:", "deps:"), "dependencies: is required"),
    (
        "no-build",
        GOOD.replace("build:\n  command: make", "built:\n  command: make"),
        "build.command: is required",
    ),
    (
        "no-build-command",
        GOOD.replace("command: make", "commands: make"),
        "build.command: is required",
    ),
    (
        "empty-build-command",
        GOOD.replace("command: make", "command: ''"),
        "build.command: must not be empty",
    ),
    ("no-run", GOOD.split("run:")[0], "run: is required"),
    ("no-services", GOOD.split("  services:")[0], "run.services: needs at least one service"),
    (
        "runtime-string",
        GOOD.replace("runtime: [bash", "runtime: bash\n  x: [bash"),
        "dependencies.runtime: must be a list",
    ),
    (
        "build-not-mapping",
        GOOD.replace("build:\n  command: make\n  destinations: [dist]", "build: make"),
        "build: must be a mapping",
    ),
    (
        "trace-string",
        GOOD.replace("build: [nodejs]", "build: [nodejs]\n  trace: 'yes'"),
        "dependencies.trace: must be true or false",
    ),
    (
        "strip-string",
        GOOD.replace("command: make", "command: make\n  strip_binary: nope"),
        "build.strip_binary: must be true or false",
    ),
    (
        "run-name-space",
        GOOD.replace("name: app", "name: my app"),
        "run.name: must be a lowercase name",
    ),
    (
        "run-name-upper",
        GOOD.replace("name: app", "name: App"),
        "run.name: must be a lowercase name",
    ),
    (
        "service-name-semicolon",
        GOOD.replace("name: web", "name: 'web;rm'"),
        "run.services[0].name: must be a lowercase name",
    ),
    ("binary-dollar", GOOD.replace("binary: app", "binary: $HOME"), "run.services[0].binary"),
    ("binary-slash", GOOD.replace("binary: app", "binary: bin/app"), "run.services[0].binary"),
    ("binary-quote", GOOD.replace("binary: app", 'binary: "a\'b"'), "run.services[0].binary"),
    (
        "path-relative",
        GOOD.replace("binary: app", "binary: app\n      path: usr/bin"),
        "run.services[0].path: must be an absolute path",
    ),
    (
        "path-dotdot",
        GOOD.replace("binary: app", "binary: app\n      path: /usr/../etc"),
        "run.services[0].path: must be an absolute path",
    ),
    (
        "command-name-dash",
        GOOD + "  commands:\n    - {name: db-migrate, binary: app, call: m}\n",
        "run.commands[0].name: must be a shell identifier",
    ),
    (
        "command-name-reserved",
        GOOD + "  commands:\n    - {name: stop, binary: app}\n",
        "run.commands[0].name: clashes with an OpenRC built-in",
    ),
    (
        "command-path-dotdot",
        GOOD + "  commands:\n    - {name: m, binary: app, path: /a/../b}\n",
        "run.commands[0].path",
    ),
    (
        "start-call-multiline",
        GOOD.replace("call: serve", 'call: "serve\\nrm -rf /"'),
        "run.services[0].start.call: must be a single line",
    ),
    (
        "destination-absolute",
        GOOD.replace("[dist]", "[/etc]"),
        "build.destinations[0]: must be relative",
    ),
    (
        "destination-dotdot",
        GOOD.replace("[dist]", "[../secrets]"),
        "build.destinations[0]: must not escape",
    ),
    (
        "destination-shell",
        GOOD.replace("[dist]", "['dist; rm -rf /']"),
        "build.destinations[0]: must not contain spaces",
    ),
    ("destinations-string", GOOD.replace("[dist]", "dist"), "build.destinations: must be a list"),
    (
        "bad-hook",
        GOOD + "hook:\n  post-instal: echo\n",
        "hook.post-instal: is not an apk install script",
    ),
    (
        "hook-not-text",
        GOOD + "hook:\n  post-install: [a]\n",
        "hook.post-install: must be shell text",
    ),
    (
        "bad-arch",
        GOOD + "architectures: [amd64]\n",
        "architectures[0]: is not an Alpine architecture",
    ),
    ("arch-string", GOOD + "architectures: x86_64\n", "architectures: must be a list"),
    (
        "bad-dependency-space",
        GOOD.replace("[nodejs]", "['node js']"),
        "dependencies.build[0]: is not an apk dependency",
    ),
    ("bad-dependency-quote", GOOD.replace("[nodejs]", "['nodejs\"']"), "dependencies.build[0]"),
    ("bad-dependency-op", GOOD.replace("[nodejs]", "['nodejs>>1']"), "dependencies.build[0]"),
    ("bad-type", GOOD + "type: dynamic\n", "type: must be one of default, static, custom"),
    ("bad-stack", GOOD + "stack: ubuntu/22.04\n", "stack: must be alpine/<version>"),
    ("source-quote", GOOD + "source: 'a\"b'\n", "source: must not contain double quotes"),
    ("kits-mapping", GOOD + "kits: {a: 1}\n", "kits: must be a list"),
    ("page-list", GOOD + "page: [a]\n", "page: must be a mapping"),
    (
        "duplicate-service",
        GOOD + "    - {name: web, binary: app}\n",
        "run.services: names must be unique",
    ),
]


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
