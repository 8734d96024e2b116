from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from pakman import config, render
from pakman.errors import ConfigError
from pakman.identity import Identity
from tests import rig
from tests.conftest import ROOT, V8_CONFIGS, V8_REPOSITORIES

GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("PAKMAN_UPDATE_GOLDEN") == "1"


def rendered(name: str) -> dict[str, render.RenderedFile]:
    cfg = config.load(V8_CONFIGS / f"{name}.yml")
    return render.render(cfg, Identity(V8_REPOSITORIES[name], version="1.2.3", build=7))


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_golden_files(name: str) -> None:
    """Golden files were reviewed by hand against pakman-v8.md; diffs need a fresh review."""
    files = rendered(name)
    folder = GOLDEN / name
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for path, (text, _) in files.items():
            (folder / path).write_text(text)
    assert sorted(files) == sorted(p.name for p in folder.iterdir())
    for path, (text, _) in files.items():
        assert text == (folder / path).read_text(), f"{name}/{path} differs from its golden file"


def test_rendering_is_deterministic() -> None:
    assert rendered("rails") == rendered("rails")


def test_file_modes() -> None:
    files = rendered("rails")
    assert files["APKBUILD"].mode == 0o644
    assert files["locomo.pre-install"].mode == 0o755
    assert files["locomo.initd"].mode == 0o755
    assert files["locomo.profile"].mode == 0o644


def test_v8_file_table_for_default_type() -> None:
    assert sorted(rendered("elixir")) == sorted(
        [
            "APKBUILD",
            "rdio.pre-install",
            "rdio.initd",
            "rdio.run",
            "rdio.finish",
            "rdio.log",
            "rdio.profile",
            "rdio.environment",
            "rdio.env-exec",
            "rdio.post-install",
            "rdio.pre-upgrade",
            "rdio.post-upgrade",
            "rdio.post-deinstall",
        ]
    )


def test_static_and_custom_render_no_service_files() -> None:
    base = "dependencies: {runtime: [bash]}\nbuild: {command: make, destinations: [public]}\n"
    identity = Identity("acme/site")
    static = render.render(config.parse("type: static\n" + base), identity)
    assert sorted(static) == ["APKBUILD", "site.pre-install"]
    apkbuild = static["APKBUILD"].text
    assert 'depends="bash nginx"' in apkbuild
    assert "subpackages" not in apkbuild
    assert './etc/"$pkgname"/default.conf' in apkbuild
    custom = render.render(config.parse("type: custom\n" + base), identity)
    assert sorted(custom) == ["APKBUILD", "site.pre-install"]
    assert 'subpackages="$pkgname-openrc"' in custom["APKBUILD"].text
    assert ".initd" not in custom["APKBUILD"].text


def test_options_follow_trace_and_strip() -> None:
    assert 'options="!check"' in rendered("caddy")["APKBUILD"].text  # trace: true
    assert 'options="!check !tracedeps !strip"' in rendered("laravel")["APKBUILD"].text


def test_pre_install_hook_is_merged_not_overwritten() -> None:
    cfg = config.parse(
        "type: custom\ndependencies: {}\nbuild: {command: make}\n"
        "hook: {pre-install: 'echo custom-step'}\n"
    )
    files = render.render(cfg, Identity("acme/app"))
    text = files["app.pre-install"].text
    assert "adduser -S -D -H -h /var/lib/app" in text
    assert text.rstrip().endswith("echo custom-step")
    assert files["APKBUILD"].text.count("$pkgname.pre-install") == 1


def test_run_name_must_match_the_package_name() -> None:
    cfg = config.load(V8_CONFIGS / "rails.yml")
    with pytest.raises(ConfigError, match=r"run.name: must equal the package name 'other'"):
        render.render(cfg, Identity("upmaru/other"))


def test_extra_command_calls_are_quoted_as_one_argument() -> None:
    initd = rendered("laravel")["laraone.initd"].text
    assert "env-exec '/usr/bin/php artisan migrate --force --no-interaction'" in initd


def _shell_for(path: str) -> str | None:
    if path.endswith((".finish", ".log")):
        return None  # execline, not shell
    if path.endswith((".run", ".environment", ".env-exec")):
        return "bash"
    return "sh"


def _shellcheck(files: dict[str, render.RenderedFile], tmp: Path, *extra: str) -> list[str]:
    shellcheck = rig.need_tool("shellcheck")
    failures = []
    for path, (text, _) in files.items():
        shell = _shell_for(path)
        if shell is None:
            continue
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


def test_write_is_atomic_and_sets_modes(tmp_path: Path) -> None:
    written = render.write(rendered("next"), tmp_path / "out")
    assert len(written) == 13
    assert (tmp_path / "out" / "nimbus.run").stat().st_mode & 0o777 == 0o755
    assert not list((tmp_path / "out").glob(".*.tmp"))
