"""The build container, as plain data.

The Dagger module folds these recipes into ``Container`` calls and adds nothing
of its own, so everything about the container (image, packages, user, caches,
environment, secret mounts, commands) is decided and tested here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pakman.errors import ConfigError
from pakman.identity import Identity, alpine_image_tag

BUILDER = "builder"
HOME = f"/home/{BUILDER}"
WORKSPACE = f"{HOME}/workspace"
REPODEST = f"{HOME}/packages"
PACKAGES = ("alpine-sdk", "coreutils", "tar", "zip", "sudo", "git")
# A pinned image for the module's small helper containers (git describe, the selftest).
TOOLS_IMAGE = "alpine:3.23"
# Never part of the build container: git's history would make every fetch a cache miss.
# The module filters it out of the source (a content-hashed snapshot) before the copy: an
# exclude on the copy itself keeps the unfiltered source, .git and all, in the copy's key.
SNAPSHOT_EXCLUDE = (".git",)
# What the module leaves out of a --source (the engine's patterns: anchored at the source's
# root, `*` within one name, `**` across folders). Only what pakman itself writes, and
# dependency folders no build reads from the host: an application's own `packages/`
# folder (a JavaScript monorepo's, say) stays, so the build and git's view of it are whole.
SOURCE_IGNORE = (
    "**/node_modules",
    "**/__pycache__",
    ".venv",
    ".apk",  # the rendered build files; bootstrap renders them afresh
    "packages/*/*/*.apk",  # build's output, exported as packages/<org>/<arch>/
    "packages/*/*/APKINDEX.tar.gz",
    "packages.zip",  # merge's output
)
# What `repo` reads of a --source: its config only. Everything else is left out of the
# upload (the engine's patterns, in order: a later `!` pattern takes a path back in).
CONFIG_ONLY = ("*", "!**/*.yml", "!**/*.yaml")
# The step named when a platform fails after its commands, while its output is read.
OUTPUT_STEP = "collect the packages"
# The step named when the build container itself cannot be made (image, mounts).
SETUP_STEP = "set up the build container"

# Docker/OCI platform -> Alpine architecture.
PLATFORMS = {
    "linux/amd64": "x86_64",
    "linux/arm64": "aarch64",
    "linux/arm64/v8": "aarch64",
    "linux/arm/v7": "armv7",
    "linux/arm/v6": "armhf",
    "linux/386": "x86",
    "linux/ppc64le": "ppc64le",
    "linux/s390x": "s390x",
    "linux/riscv64": "riscv64",
    "linux/loong64": "loongarch64",
}

# The build user's language caches: (name, path). abuild's distfiles are shared too.
USER_CACHES = (
    ("distfiles", "/var/cache/distfiles"),
    ("npm", f"{HOME}/.npm"),
    ("pip", f"{HOME}/.cache/pip"),
    ("uv", f"{HOME}/.cache/uv"),
    ("go-mod", f"{HOME}/go/pkg/mod"),
    ("go-build", f"{HOME}/.cache/go-build"),
    ("cargo-registry", f"{HOME}/.cargo/registry"),
    ("cargo-git", f"{HOME}/.cargo/git"),
    ("mix", f"{HOME}/.mix"),
    ("hex", f"{HOME}/.hex"),
    ("bundler", f"{HOME}/.bundle/cache"),
    ("gem", f"{HOME}/.local/share/gem"),
    ("composer", f"{HOME}/.cache/composer"),
)


def alpine_arch(platform: str) -> str:
    """The Alpine architecture built on a Docker platform such as ``linux/arm64``."""
    try:
        return PLATFORMS[platform]
    except KeyError:
        known = ", ".join(sorted(PLATFORMS))
        raise ConfigError(f"platform: not supported (got {platform!r}; known: {known})") from None


def check_platforms(architectures: tuple[str, ...], platforms: list[str]) -> None:
    """Every platform must build an arch the config lists, or abuild refuses it much later."""
    if not platforms:
        raise ConfigError("platforms: at least one is required, e.g. linux/amd64")
    if {"noarch", "all"} & set(architectures):
        return
    problems = [
        f"platforms: {platform} builds {alpine_arch(platform)}, which instellar.yml's"
        f" architectures ({', '.join(architectures)}) do not list"
        for platform in platforms
        if alpine_arch(platform) not in architectures
    ]
    if problems:
        raise ConfigError(*problems)


@dataclass(frozen=True)
class Cache:
    """A cache volume: where it is mounted, its key, and who owns it."""

    path: str
    key: str
    owner: str = ""
    # Mounted LOCKED only while the root steps run, then unmounted. The engine holds a
    # LOCKED volume's lock for the whole of every exec it is mounted in, so a lock held
    # into abuild would run two builds of one branch and arch one after the other.
    setup_only: bool = False

    @property
    def locked(self) -> bool:
        """Serialise writers: only the setup caches, which apk writes in place."""
        return self.setup_only


@dataclass(frozen=True)
class Step:
    """One command, as exec arguments."""

    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class BuilderRecipe:
    """The Alpine build container for one platform."""

    image: str
    platform: str
    arch: str
    branch: str
    root_steps: tuple[Step, ...]
    caches: tuple[Cache, ...]
    user: str = BUILDER
    workdir: str = HOME


def builder(branch: str, platform: str) -> BuilderRecipe:
    """The build container: ``alpine:<tag>`` with alpine-sdk, a ``builder`` user, caches."""
    arch = alpine_arch(platform)
    scope = f"{branch}-{arch}"
    caches = (
        # apk's cache, for the build tools' install only: apk writes it in place.
        Cache("/var/cache/apk", f"pakman-apk-{scope}", setup_only=True),
        *(Cache(path, f"pakman-{name}-{scope}", owner=BUILDER) for name, path in USER_CACHES),
    )
    # The engine creates a cache mount's missing parents as root, and the build user could
    # then not write beside it (~/.cache, ~/.cargo, ~/go/pkg, ~/.local/share, ~/.bundle):
    # every user cache path is made, and owned by the build user, before anything mounts.
    user_dirs = " ".join(sorted({f"{HOME}/.abuild", REPODEST, *(path for _, path in USER_CACHES)}))
    root_steps = (
        Step("enable the apk cache", ("ln", "-sf", "/var/cache/apk", "/etc/apk/cache")),
        Step("install the build tools", ("apk", "add", "--update-cache", *PACKAGES)),
        Step(
            "add the build user",
            (
                "sh",
                "-c",
                f"adduser -D {BUILDER} && addgroup {BUILDER} abuild && "
                f"echo '{BUILDER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{BUILDER} && "
                f"mkdir -p {user_dirs} && "
                f"chown -R {BUILDER}:{BUILDER} {HOME} /var/cache/distfiles",
            ),
        ),
        # The apk cache is unmounted after these steps; apk must not write to the empty
        # folder left behind (abuild installs makedepends with apk).
        Step("disable the apk cache", ("rm", "-f", "/etc/apk/cache")),
    )
    return BuilderRecipe(
        image=f"alpine:{alpine_image_tag(branch)}",
        platform=platform,
        arch=arch,
        branch=branch,
        root_steps=root_steps,
        caches=caches,
    )


def throwaway_key(arch: str) -> str:
    """The file name of a build's own signing key, made in the build container for that
    build (abuild signs every package and index it makes). Named per arch, so each
    platform's is told apart; trusted nowhere but in that container."""
    return f"pakman-build-{arch}.rsa"


@dataclass(frozen=True)
class Signing:
    """Who signs: abuild in the build container with a throwaway key, then PAKman's own
    code with the real key (``pakman.sign.sign_tree``) where nothing of the application
    runs: the module's runtime. The build container gets no key material of the real key."""

    throwaway: str  # the throwaway key's public half, in the build container
    key_name: str  # the real key's name in the final signatures: <org>-<slug>.rsa.pub
    signer: str = "pakman.sign.sign_tree, in the module's runtime"


@dataclass(frozen=True)
class BuildRecipe:
    """What runs in the builder for one platform: files, environment, commands, and how
    its output is signed. No secrets: nothing of the real key is mounted or written."""

    workdir: str
    env: dict[str, str]
    files: dict[str, str]  # files to write, path -> contents
    steps: tuple[Step, ...]
    signing: Signing
    output: str = REPODEST


def build(identity: Identity, source_date_epoch: int | None, arch: str) -> BuildRecipe:
    """A throwaway key, abuild snapshot, abuild -r; the real key signs later, elsewhere."""
    from pakman.keys import abuild_conf

    private_path = f"{HOME}/.abuild/{throwaway_key(arch)}"
    env = {"REPODEST": REPODEST, "PACKAGER": f"PAKman <{identity.repository}>"}
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    # What abuild-keygen does, under a name of our own; the public half is trusted by this
    # container's apk (abuild -r reads its own repository back) and by nothing else.
    keygen = (
        f"openssl genrsa -out {private_path} 2048 2>/dev/null && "
        f"openssl rsa -in {private_path} -pubout -out {private_path}.pub 2>/dev/null && "
        f"sudo cp {private_path}.pub /etc/apk/keys/"
    )
    return BuildRecipe(
        workdir=f"{WORKSPACE}/{identity.apk_dir}",
        env=env,
        files={f"{HOME}/.abuild/abuild.conf": abuild_conf(private_path)},
        steps=(
            Step("make a throwaway signing key", ("sh", "-c", keygen)),
            Step("abuild snapshot", ("abuild", "snapshot")),
            Step("abuild -r", ("abuild", "-r")),
        ),
        signing=Signing(throwaway=f"{private_path}.pub", key_name=f"{identity.key_name}.pub"),
    )


PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|\Z)", re.DOTALL)


# What a setuid helper (abuild-sudo, sudo) prints when an emulated platform runs without
# the host's binfmt handlers: the engine's own QEMU wrapper cannot honour setuid bits.
EMULATION_SYMPTOMS = (
    "setuid(0) failed",
    "effective uid is not 0",
    "exec format error",
)
BINFMT_HINT = (
    "hint: {platform} runs under emulation, and setuid helpers such as abuild-sudo need the"
    " host's QEMU binfmt handlers. Install them on the engine's host once with"
    " `docker run --privileged --rm tonistiigi/binfmt --install all`"
    " (on GitHub Actions: docker/setup-qemu-action), or build on a native {platform} runner."
)


def step_name(command: list[str] | tuple[str, ...], steps: tuple[Step, ...]) -> str:
    """The step that ran ``command`` (the engine reports the exec that failed, which may be
    an earlier one than the step being synced), else the command itself."""
    for step in steps:
        if tuple(command) == step.args:
            return step.name
    return " ".join(command)


def failure_message(platform: str, step: str, exit_code: int, output: str, lines: int = 60) -> str:
    """A build failure: the platform, the step and the tail of its output, PEM blocks removed."""
    tail = "\n".join(PEM_BLOCK.sub("[key material removed]", output).splitlines()[-lines:])
    message = f"build failed for {platform} at {step!r} (exit {exit_code}); last lines:\n{tail}"
    if any(symptom in output for symptom in EMULATION_SYMPTOMS):
        message += "\n" + BINFMT_HINT.format(platform=platform)
    return message
