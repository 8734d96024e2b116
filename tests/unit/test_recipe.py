"""The build container as data: everything the Dagger module folds into a Container."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pakman import keys, recipe
from pakman.errors import ConfigError
from pakman.identity import Identity, resolve_alpine
from tests.support.enginepatterns import engine_ignores

IDENTITY = Identity("Acme/My.App", version="1.2.3", build=4)


def test_image_packages_and_user() -> None:
    r = recipe.builder("v3.20", "linux/arm64")
    assert r.image == "alpine:3.20"
    assert r.platform == "linux/arm64"
    assert r.arch == "aarch64"
    assert r.user == "builder"
    assert r.workdir == "/home/builder"
    install = next(s for s in r.root_steps if s.name == "install the build tools")
    assert install.args == (
        "apk",
        "add",
        "--update-cache",
        "alpine-sdk",
        "coreutils",
        "tar",
        "zip",
        "sudo",
        "git",
    )
    user = next(s for s in r.root_steps if s.name == "add the build user")
    assert "adduser -D builder && addgroup builder abuild" in user.args[2]
    assert recipe.builder("latest-stable", "linux/amd64").image == "alpine:latest"
    assert recipe.builder("edge", "linux/amd64").image == "alpine:edge"


def test_caches_are_keyed_by_version_and_arch() -> None:
    amd = recipe.builder("v3.20", "linux/amd64")
    arm = recipe.builder("v3.20", "linux/arm64")
    older = recipe.builder("v3.19", "linux/amd64")
    assert all(c.key.endswith("-v3.20-x86_64") for c in amd.caches)
    assert all(c.key.endswith("-v3.20-aarch64") for c in arm.caches)
    keys_amd = {c.key for c in amd.caches}
    assert keys_amd.isdisjoint(c.key for c in arm.caches)
    assert keys_amd.isdisjoint(c.key for c in older.caches)
    paths = {c.path: c for c in amd.caches}
    assert paths["/var/cache/apk"].owner == ""  # root's
    assert paths["/var/cache/apk"].locked
    for path in [
        "/var/cache/distfiles",
        "/home/builder/.npm",
        "/home/builder/.cache/pip",
        "/home/builder/.cache/uv",
        "/home/builder/go/pkg/mod",
        "/home/builder/.cargo/registry",
        "/home/builder/.mix",
        "/home/builder/.hex",
        "/home/builder/.bundle/cache",
        "/home/builder/.cache/composer",
    ]:
        assert paths[path].owner == "builder", path


def test_unknown_platform() -> None:
    with pytest.raises(ConfigError, match="platform: not supported \\(got 'windows/amd64'"):
        recipe.builder("v3.20", "windows/amd64")
    assert recipe.alpine_arch("linux/arm/v7") == "armv7"


def test_build_steps_env_and_workdir() -> None:
    r = recipe.build(IDENTITY, 1700000000, "aarch64")
    assert r.workdir == "/home/builder/workspace/.apk/acme/My.App"
    assert r.env["SOURCE_DATE_EPOCH"] == "1700000000"
    assert r.env["REPODEST"] == "/home/builder/packages"
    assert [s.name for s in r.steps] == [
        "make a throwaway signing key",
        "abuild snapshot",
        "abuild -r",
    ]
    assert r.steps[1].args == ("abuild", "snapshot")
    assert r.steps[2].args == ("abuild", "-r")
    assert "SOURCE_DATE_EPOCH" not in recipe.build(IDENTITY, None, "x86_64").env


def test_the_build_recipe_carries_no_private_key_mount() -> None:
    """The application's build (abuild -r runs its npm install, mix deps.get...) never
    meets the real key: abuild signs with a key made for that build, and the real key
    signs afterwards in pakman's own code (issue 26)."""
    r = recipe.build(IDENTITY, None, "aarch64")
    assert "secrets" not in {f.name for f in dataclasses.fields(r)}
    assert not hasattr(recipe, "SecretMount")
    throwaway = "/home/builder/.abuild/pakman-build-aarch64.rsa"
    assert r.files == {"/home/builder/.abuild/abuild.conf": f'PACKAGER_PRIVKEY="{throwaway}"\n'}
    keygen = r.steps[0].args[2]
    assert f"openssl genrsa -out {throwaway} 2048" in keygen
    assert f"sudo cp {throwaway}.pub /etc/apk/keys/" in keygen
    assert r.signing == recipe.Signing(
        throwaway=f"{throwaway}.pub",
        key_name="acme-my-app.rsa.pub",
        signer="pakman.sign.sign_tree, in the module's runtime",
    )
    # The real key's name appears only where the final signatures name it.
    text = json.dumps(dataclasses.asdict(dataclasses.replace(r, signing=None)))  # type: ignore[arg-type]
    assert "acme-my-app.rsa" not in text
    # Nothing in the recipe's plain data can carry key material: it is made without keys.
    pair = keys.generate(2048)
    assert pair.private_pem.decode().splitlines()[1] not in text
    assert "BEGIN" not in text
    # Each platform's build key is its own.
    assert recipe.throwaway_key("x86_64") != recipe.throwaway_key("aarch64")


def test_a_failing_command_is_named_by_its_step() -> None:
    """The engine reports the exec that failed, which may precede the step being synced."""
    r = recipe.builder("v3.20", "linux/amd64")
    install = next(s for s in r.root_steps if s.name == "install the build tools")
    assert recipe.step_name(list(install.args), r.root_steps) == "install the build tools"
    assert recipe.step_name(["make", "-j2"], r.root_steps) == "make -j2"


def test_the_apk_cache_is_mounted_for_the_setup_only() -> None:
    r = recipe.builder("v3.20", "linux/amd64")
    assert [c.path for c in r.caches if c.setup_only] == ["/var/cache/apk"]
    assert [c.path for c in r.caches if c.locked] == ["/var/cache/apk"]
    assert r.root_steps[-1].args == ("rm", "-f", "/etc/apk/cache")  # apk caches no more


def test_failure_message_names_the_platform_and_strips_keys() -> None:
    pair = keys.generate(2048)
    output = (
        "\n".join(f"line {i}" for i in range(100)) + "\n" + pair.private_pem.decode() + "\nboom"
    )
    message = recipe.failure_message("linux/arm64", "abuild -r", 1, output, lines=5)
    assert message.startswith("build failed for linux/arm64 at 'abuild -r' (exit 1); last lines:")
    assert "boom" in message
    assert "line 1\n" not in message
    assert "PRIVATE KEY" not in message
    assert pair.private_pem.decode().splitlines()[1] not in message


def test_platforms_must_match_the_configured_architectures() -> None:
    recipe.check_platforms(("x86_64", "aarch64"), ["linux/amd64", "linux/arm64"])
    recipe.check_platforms(("noarch",), ["linux/riscv64"])
    with pytest.raises(ConfigError) as caught:
        recipe.check_platforms(("x86_64",), ["linux/amd64", "linux/arm64", "linux/arm/v7"])
    assert caught.value.problems == (
        "platforms: linux/arm64 builds aarch64, which instellar.yml's architectures (x86_64)"
        " do not list",
        "platforms: linux/arm/v7 builds armv7, which instellar.yml's architectures (x86_64)"
        " do not list",
    )
    with pytest.raises(ConfigError, match="at least one"):
        recipe.check_platforms(("x86_64",), [])


def test_every_cache_parent_is_made_and_owned_by_the_build_user() -> None:
    """The engine makes a mount's missing parents as root: ~/.cargo would be root's."""
    r = recipe.builder("v3.20", "linux/amd64")
    user = next(s for s in r.root_steps if s.name == "add the build user").args[2]
    made = user.split("mkdir -p ", 1)[1].split(" && ", 1)[0].split()
    chowned = user.split("chown -R builder:builder ", 1)[1].split()
    for cache in r.caches:
        if cache.owner:
            assert cache.path in made, cache.path
            assert any(cache.path.startswith(root) for root in chowned), cache.path
    assert "/home/builder/.cargo/registry" in made
    assert "/home/builder/.local/share/gem" in made


def test_a_failure_under_emulation_says_how_to_fix_it() -> None:
    output = "abuild-apk: setuid(0) failed: Operation not permitted\n"
    message = recipe.failure_message("linux/arm64", "abuild -r", 1, output)
    assert "tonistiigi/binfmt --install all" in message
    assert "linux/arm64 runs under emulation" in message
    plain = recipe.failure_message("linux/arm64", "abuild -r", 1, "make: *** Error 2\n")
    assert "binfmt" not in plain


def test_images_are_pinned() -> None:
    assert recipe.TOOLS_IMAGE.startswith("alpine:3.")
    assert recipe.builder(resolve_alpine("", None), "linux/amd64").image == "alpine:3.23"


def test_the_source_keeps_an_applications_own_packages_folder() -> None:
    """A JavaScript monorepo tracks a top-level packages/: only pakman's outputs go."""
    kept = [
        "package.json",
        "instellar.yml",
        "packages/web/package.json",
        "packages/web/src/index.ts",
        "packages/api/dist/server.js",
        "packages/api/README.md",
        "packages/zip/packages.zip",  # an application's own file of that name, deeper down
    ]
    dropped = [
        "packages/acme/x86_64/app-1.0.0-r0.apk",  # build's output, exported as packages/
        "packages/acme/aarch64/APKINDEX.tar.gz",
        "packages.zip",  # merge's output
        ".apk/acme/app/APKBUILD",  # rendered afresh by every build
        "node_modules/left-pad/index.js",
        "packages/web/node_modules/react/index.js",
        "app/__pycache__/x.cpython-311.pyc",
        ".venv/bin/python",
    ]
    assert [p for p in kept if engine_ignores(p, recipe.SOURCE_IGNORE)] == []
    assert [p for p in dropped if not engine_ignores(p, recipe.SOURCE_IGNORE)] == []
    # The model of the engine's rule is itself checked against the list it replaced.
    assert engine_ignores("packages/web/package.json", ("packages",))
