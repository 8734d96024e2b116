"""The engine selftest's install commands, run offline with real apk-tools 3 in the Alpine
root: a built repository of examples/hello, and a stand-in for Alpine's repositories (no
network in the root) holding what the package needs from Alpine."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import keys
from tests.support import rig
from tests.unit.test_dagger_selftest import hello_depends

try:
    from pakman_tests.install import FROM_ALPINE, install_commands
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-tests module is not installed (pip install -e ./ci/tests)")
    raise


def test_the_selftest_installs_a_built_package_with_real_apk(
    tmp_path: Path, alpine: rig.Overlay
) -> None:
    # "Alpine's repositories": their own key, the root's default repositories file.
    alpine_key = SigningKey(keys.generate(2048), "alpine-devel@stand-in.rsa.pub")
    mirror = tmp_path / "mirror" / "main"
    write_repo(
        mirror,
        alpine_key,
        [
            make_package(alpine_key, name, "9.9-r0", files={f"usr/share/{name}/from": b"alpine"})
            for name in FROM_ALPINE
        ],
    )
    alpine.bind(mirror, "/srv/mirror/main", readonly=True)
    alpine.put("/etc/apk/repositories", "/srv/mirror/main\n")
    alpine.put(f"/etc/apk/keys/{alpine_key.name}", alpine_key.pair.public_pem.decode())
    # The built repository, signed by the app's key, as build exports it: <org>/<arch>/.
    app_key = SigningKey(keys.generate(2048), "pakman-hello.rsa.pub")
    packages = [
        make_package(app_key, "hello", "1.0.0-r1", depends=hello_depends()),
        make_package(app_key, "hello-openrc", "1.0.0-r1"),
    ]
    write_repo(tmp_path / "repo" / "pakman", app_key, packages)
    alpine.bind(tmp_path / "repo", "/repo", readonly=True)
    alpine.bind(app_key.write_public(tmp_path / "trusted").parent, "/trusted", readonly=True)
    script = " && ".join(
        shlex.join(command) for command in install_commands("/repo/pakman", "/trusted", "hello")
    )
    done = alpine.run(script, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = alpine.run("apk info -e hello hello-openrc s6 execline bash").stdout.split()
    assert installed == ["hello", "hello-openrc", "s6", "execline", "bash"]
    # And trust stays narrowed: the app's key is not among the root's trusted keys.
    assert app_key.name not in alpine.run("ls /etc/apk/keys").stdout.split()


@pytest.mark.parametrize("missing", ["s6", "execline"])
def test_a_dependency_alpine_lacks_fails_the_install(
    missing: str, tmp_path: Path, alpine: rig.Overlay
) -> None:
    """The rig catches the break the selftest had: hello's s6 found nowhere."""
    app_key = SigningKey(keys.generate(2048), "pakman-hello.rsa.pub")
    write_repo(
        tmp_path / "repo" / "pakman",
        app_key,
        [
            make_package(app_key, "hello", "1.0.0-r1", depends=hello_depends()),
            make_package(app_key, "hello-openrc", "1.0.0-r1"),
        ],
    )
    alpine.bind(tmp_path / "repo", "/repo", readonly=True)
    alpine.bind(app_key.write_public(tmp_path / "trusted").parent, "/trusted", readonly=True)
    narrowed = shlex.join(install_commands("/repo/pakman", "/trusted", "hello")[-1])
    done = alpine.run(narrowed, check=False)
    assert done.returncode != 0
    assert f"{missing} (no such package)" in done.stdout + done.stderr
