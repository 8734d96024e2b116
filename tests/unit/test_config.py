from __future__ import annotations

import dataclasses

import pytest

from pakman import config
from pakman.errors import ConfigError
from tests.support.configs import BAD, GOOD
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


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 25


# --- hostile input: each one clean error, nothing lost or leaked --------------------------
