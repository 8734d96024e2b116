"""Rendered files checked by real Alpine busybox ash, in a chroot."""

from __future__ import annotations

from pathlib import Path

import pytest

from pakman import config, render
from pakman.identity import Identity
from tests.support import rig
from tests.support.paths import V8_CONFIGS, V8_REPOSITORIES

VARIABLES = (
    "pkgname",
    "pkgver",
    "pkgrel",
    "arch",
    "options",
    "depends",
    "makedepends",
    "subpackages",
    "install",
    "source",
)


def _render_into(name: str, folder: Path) -> tuple[config.Config, Identity]:
    cfg = config.load(V8_CONFIGS / f"{name}.yml")
    identity = Identity(V8_REPOSITORIES[name], version="2.3.4", build=9)
    render.write(render.render(cfg, identity), folder)
    return cfg, identity


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_apkbuild_parses_and_sources_in_real_ash(
    name: str, alpine: rig.Overlay, tmp_path: Path
) -> None:
    cfg, identity = _render_into(name, tmp_path)
    alpine.bind(tmp_path, "/work", readonly=True)
    assert alpine.run("ash -n /work/APKBUILD").returncode == 0
    out = alpine.run(
        "srcdir=/src; cd /work; . ./APKBUILD; "
        + "; ".join(f'printf "%s\\0" "${v}"' for v in VARIABLES)
    ).stdout
    values = dict(zip(VARIABLES, out.split("\0")[: len(VARIABLES)], strict=True))
    slug = identity.slug
    assert values["pkgname"] == slug
    assert values["pkgver"] == "2.3.4"
    assert values["pkgrel"] == "9"
    assert values["arch"].split() == list(cfg.architectures)
    assert values["options"].split()[0] == "!check"
    assert ("!tracedeps" in values["options"]) != cfg.dependencies.trace
    assert values["depends"].split() == list(render.runtime_depends(cfg, identity))
    assert ({"s6", "execline"} <= set(values["depends"].split())) == cfg.installs_s6_service
    assert values["makedepends"].split() == list(cfg.dependencies.build)
    assert values["subpackages"] == f"{slug}-openrc"
    # pakman's own scripts first (the pre-deinstall: every v8 config runs an s6 service).
    own = ["pre-install", "pre-deinstall"]
    assert values["install"].split() == [f"{slug}.{script}" for script in own] + [
        f"{slug}.{hook}" for hook, _ in cfg.hooks if hook not in own
    ]
    assert values["source"].split() == [f"{slug}-2.3.4.tar"] + [
        f"{slug}.{kind}" for kind in render.SERVICE_FILES
    ]


def test_real_ash_rejects_a_broken_apkbuild(alpine: rig.Overlay, tmp_path: Path) -> None:
    (tmp_path / "APKBUILD").write_text('pkgname="x\nbuild() {\n')
    alpine.bind(tmp_path, "/work", readonly=True)
    result = alpine.run("ash -n /work/APKBUILD", check=False)
    assert result.returncode == 2
    assert "syntax error" in result.stderr


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_shell_scripts_parse_in_real_ash(name: str, alpine: rig.Overlay, tmp_path: Path) -> None:
    _render_into(name, tmp_path)
    alpine.bind(tmp_path, "/work", readonly=True)
    for path in sorted(tmp_path.iterdir()):
        first = path.read_text().splitlines()[0]
        if first in ("#!/bin/sh", "#!/sbin/openrc-run"):
            alpine.run(f"ash -n /work/{path.name}")


@pytest.mark.parametrize("name", sorted(V8_REPOSITORIES))
def test_openrc_accepts_the_init_script(name: str, alpine: rig.Overlay, tmp_path: Path) -> None:
    """Alpine's own openrc-run loads the script and lists every extra command."""
    cfg, _ = _render_into(name, tmp_path)
    assert cfg.run is not None
    service = cfg.run.name
    alpine.put(f"/etc/init.d/{service}", (tmp_path / f"{service}.initd").read_text(), 0o755)
    result = alpine.run(f"/etc/init.d/{service} describe")
    out = result.stdout + result.stderr
    assert f"{service} service" in out
    for command in cfg.run.commands:
        assert f"* {command.name}: Run " in out, out


def test_pre_install_creates_the_user_and_group(alpine: rig.Overlay, tmp_path: Path) -> None:
    _, identity = _render_into("rails", tmp_path)
    alpine.bind(tmp_path, "/work", readonly=True)
    assert alpine.run("id locomo", check=False).returncode != 0
    alpine.run("/work/locomo.pre-install")
    passwd = alpine.run("grep '^locomo:' /etc/passwd").stdout.strip().split(":")
    assert passwd[5] == "/var/lib/locomo"
    assert passwd[6] == "/sbin/nologin"
    assert int(passwd[2]) < 1000  # a system user
    group = alpine.run("grep '^locomo:' /etc/group").stdout.strip().split(":")
    assert group[2] == passwd[3]
    # Running it again (a reinstall) still succeeds.
    alpine.run("/work/locomo.pre-install")
    assert identity.slug == "locomo"


TRICKY = r"""
type: custom
dependencies:
  runtime: ["so:libc.musl-x86_64.so.1", "ruby>=3.2", "!conflicting", "libstdc++", "py3-x~1.2",
            "cmd:curl", "name@testing"]
  build: ["pc:openssl", "nodejs=~20"]
build:
  command: |
    echo "$srcdir" 'single quotes' `true` $(true)
    cat <<'EOF'
    a heredoc, unindented
    EOF
  destinations: ["_build/prod/rel/app/*", ".next", "public/[a-z]*"]
source: |
  $pkgname.extra
  https://example.com/file-$pkgver.tar.gz
package: |
  echo "done" 'quotes' "$pkgname"
"""


def test_tricky_valid_values_survive_quoting(alpine: rig.Overlay, tmp_path: Path) -> None:
    """Quoted APKBUILD fields hold exactly what was validated; raw shell stays raw."""
    cfg = config.parse(TRICKY)
    identity = Identity("Some-Org/My_App.v2", version="1.2.3_rc1", build=7)
    render.write(render.render(cfg, identity), tmp_path)
    alpine.bind(tmp_path, "/work", readonly=True)
    alpine.run("ash -n /work/APKBUILD")
    names = ("pkgname", "pkgver", "depends", "makedepends", "source", "pkgdesc", "url")
    out = alpine.run(
        "srcdir=/src; cd /work; . ./APKBUILD; " + "; ".join(f'printf "%s\\0" "${v}"' for v in names)
    ).stdout
    values = dict(zip(names, out.split("\0")[: len(names)], strict=True))
    assert values["pkgname"] == "my-app-v2"
    assert values["pkgver"] == "1.2.3_rc1"
    assert values["depends"].split() == list(cfg.dependencies.runtime)
    assert values["makedepends"].split() == ["pc:openssl", "nodejs=~20"]
    assert values["source"].split() == [
        "my-app-v2-1.2.3_rc1.tar",
        "my-app-v2.extra",
        "https://example.com/file-1.2.3_rc1.tar.gz",
    ]
    assert values["pkgdesc"] == "My_App.v2"
    assert values["url"] == "https://github.com/Some-Org/My_App.v2"
    # The build body runs as written, heredoc included.
    build = alpine.run("mkdir -p /src; srcdir=/src; cd /work; . ./APKBUILD; build").stdout
    assert build.splitlines() == ["/src single quotes", "a heredoc, unindented"]
