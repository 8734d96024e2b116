from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pakman import config, render
from pakman.errors import ConfigError
from pakman.identity import Identity
from tests.support.paths import ROOT, V8_CONFIGS, V8_REPOSITORIES

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


def test_v8_file_table_for_default_type() -> None:
    assert sorted(rendered("elixir")) == sorted(
        [
            "APKBUILD",
            "rdio.pre-install",
            "rdio.pre-deinstall",
            "rdio.initd",
            "rdio.run",
            "rdio.finish",
            "rdio.log",
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
    assert ".initd" not in custom["APKBUILD"].text


def test_options_follow_trace_and_strip() -> None:
    # trace: true; its package step runs setcap, which abuild refuses without the option.
    assert 'options="!check setcap"' in rendered("caddy")["APKBUILD"].text
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


def test_write_is_atomic_and_sets_modes(tmp_path: Path) -> None:
    written = render.write(rendered("next"), tmp_path / "out")
    assert len(written) == 13
    assert (tmp_path / "out" / "nimbus.run").stat().st_mode & 0o777 == 0o755
    assert not list((tmp_path / "out").glob(".*.tmp"))


BASE = "dependencies: {runtime: [bash]}\nbuild: {command: make, destinations: [public]}\n"
STATIC = "type: static\n" + BASE


def _apkbuild(text: str, identity: Identity | None = None) -> str:
    return render.render(config.parse(text), identity or Identity("acme/site"))["APKBUILD"].text


@pytest.mark.parametrize(
    ("text", "declared"),
    [
        ("type: custom\n" + BASE, False),
        ("type: static\n" + BASE, False),
        # A custom package: opts in by installing an init script ...
        ('type: custom\npackage: |\n  install -Dm755 x "$pkgdir"/etc/init.d/site\n' + BASE, True),
        # ... and a default app's own package: that installs none opts out.
        (
            "run: {name: site, services: [{name: web, binary: site}]}\npackage: 'true'\n" + BASE,
            False,
        ),
        ("run: {name: site, services: [{name: web, binary: site}]}\n" + BASE, True),
    ],
)
def test_openrc_subpackage_only_when_an_init_script_is_installed(text: str, declared: bool) -> None:
    """abuild stops with "Missing subpkgdir" when <name>-openrc would be empty."""
    apkbuild = _apkbuild(text)
    assert ('subpackages="$pkgname-openrc"' in apkbuild) is declared
    # The package depends on its init script's subpackage, so hosts without openrc get it.
    depends = next(line for line in apkbuild.splitlines() if line.startswith("depends="))
    assert ("site-openrc" in depends) is declared


def test_openrc_dependency_is_not_added_twice() -> None:
    depends = render.runtime_depends(
        config.load(V8_CONFIGS / "rails.yml"), Identity("upmaru/locomo")
    )
    assert depends.count("locomo-openrc") == 1
    cfg = config.parse("run: {name: site, services: [{name: web, binary: site}]}\n" + BASE)
    assert render.runtime_depends(cfg, Identity("acme/site")) == (
        "bash",
        "site-openrc",
        "s6",
        "execline",
    )


def test_a_default_type_package_depends_on_its_supervisor_once() -> None:
    """examples/hello lists only bash: without s6 the service could never run."""
    hello = config.load(ROOT / "examples" / "hello" / "instellar.yml")
    assert render.runtime_depends(hello, Identity("pakman/hello")) == (
        "bash",
        "hello-openrc",
        "s6",
        "execline",
    )
    pinned = config.parse(
        "dependencies: {runtime: [bash, s6>=2.11, execline]}\n"
        "build: {command: make, destinations: ['*']}\n"
        "run: {name: app, services: [{name: web, binary: app}]}\n"
    )
    assert render.runtime_depends(pinned, Identity("acme/app")) == (
        "bash",
        "s6>=2.11",
        "execline",
        "app-openrc",
    )
    for kind in ("static", "custom"):  # no s6 service files: no s6
        other = config.parse(f"type: {kind}\n" + BASE)
        assert "s6" not in render.runtime_depends(other, Identity("acme/app"))


def test_a_package_of_its_own_still_depends_on_its_supervisor_once() -> None:
    """v8's caddy fixture installs pakman's init script in its own ``package:``: its
    service runs under s6 all the same, and OpenRC's s6-svscan needs execline."""
    caddy = config.load(V8_CONFIGS / "caddy.yml")
    depends = render.runtime_depends(caddy, Identity(V8_REPOSITORIES["caddy"]))
    assert depends.count("s6") == depends.count("execline") == 1
    assert depends[-1] == "execline"  # caddy lists s6 itself: only execline is added
    no_service = config.parse(
        BASE + "run: {name: app, services: [{name: web, binary: app}]}\n"
        'package: |\n  install -Dm755 app "$pkgdir"/usr/bin/app\n'
    )
    assert "execline" not in render.runtime_depends(no_service, Identity("acme/app"))


def test_a_service_package_removes_its_runtime_state_before_its_own_pre_deinstall() -> None:
    """pakman's pre-deinstall runs first; the config's own hook text follows it."""
    service = "run: {name: app, services: [{name: web, binary: app}]}\n"
    hooked = config.parse(BASE + service + "hook: {pre-deinstall: echo bye}\n")
    files = render.render(hooked, Identity("acme/app"))
    script = files["app.pre-deinstall"].text
    assert script.index("/supervise") < script.index("echo bye")
    assert files["APKBUILD"].text.count("$pkgname.pre-deinstall") == 1
    static = render.render(config.parse(STATIC), Identity("acme/app"))
    assert "app.pre-deinstall" not in static


def test_docs_name_what_the_init_script_runs() -> None:
    """docs/services.md walks through start, stop and status by the s6 commands the
    rendered init script runs, each bounded by its 10 seconds."""
    docs = (ROOT / "docs" / "services.md").read_text()
    initd = rendered("elixir")["rdio.initd"].text
    assert "_seconds=10 " in initd
    assert "at most 10 seconds" in docs
    for command in (
        "s6-svscanctl",
        "s6-svok",
        "s6-svlink",
        "s6-svwait -u",
        "s6-svc -u",
        "s6-svunlink",
        "s6-svstat",
    ):
        assert f"`{command}" in docs, command
        assert command in initd, command
    deinstall = rendered("elixir")["rdio.pre-deinstall"].text
    for state in ("supervise", "event", "log/supervise", "log/event"):
        assert f'"${{_servicedir}}/{state}"' in deinstall, state


def test_setcap_in_a_build_or_package_step_adds_the_abuild_option() -> None:
    steps = {
        "package: |\n  setcap cap_net_bind_service=+ep x\n": True,
        "package: |\n  make && setcap cap_net_raw=+ep x\n": True,
        "package: |\n  echo no-setcap-here\n": False,
    }
    for step, wanted in steps.items():
        cfg = config.parse("type: custom\n" + BASE + step)
        assert ("setcap" in render.abuild_options(cfg)) == wanted, step


def test_profile_is_not_rendered() -> None:
    """v8 rendered <name>.profile but never installed it; abuild warns about strays."""
    for name in V8_REPOSITORIES:
        assert not [path for path in rendered(name) if path.endswith(".profile")]


def test_license_and_maintainer_come_from_the_config() -> None:
    apkbuild = _apkbuild(
        STATIC + "license: Apache-2.0 OR MIT\nmaintainer: Jane Doe <jane@acme.io>\n"
    )
    assert 'license="Apache-2.0 OR MIT"' in apkbuild
    assert 'maintainer="Jane Doe <jane@acme.io>"' in apkbuild
    defaults = _apkbuild(STATIC, Identity("Acme-Org/site"))
    assert 'license="MIT"' in defaults
    assert 'maintainer="Acme-Org <Acme-Org@users.noreply.github.com>"' in defaults


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("license", "MIT; rm -rf /"),
        ("license", "MIT\n"),
        ("license", '"MIT"'),
        ("maintainer", "jane@acme.io"),
        ("maintainer", "Jane $(id) <jane@acme.io>"),
        ("maintainer", "Jane <jane@acme.io>\n"),
        ("maintainer", ' "Jane" <jane@acme.io>'),
    ],
)
def test_license_and_maintainer_are_validated(field: str, value: str) -> None:
    import json

    with pytest.raises(ConfigError, match=rf"instellar.yml: {field}: must be"):
        config.parse(STATIC + f"{field}: {json.dumps(value)}\n")


def test_commit_and_epoch_reach_the_apkbuild() -> None:
    identity = Identity("acme/site", commit="0123456789abcdef0123456789abcdef01234567-dirty")
    apkbuild = _apkbuild(STATIC, dataclasses.replace(identity, source_date_epoch=1700000000))
    assert ': "${ABUILD_LAST_COMMIT:=0123456789abcdef0123456789abcdef01234567-dirty}"' in apkbuild
    assert ': "${SOURCE_DATE_EPOCH:=1700000000}"' in apkbuild
    assert "ABUILD_LAST_COMMIT" not in _apkbuild(STATIC)
    with pytest.raises(ConfigError, match="commit: not a git commit id"):
        Identity("acme/site", commit="HEAD; rm -rf /")
