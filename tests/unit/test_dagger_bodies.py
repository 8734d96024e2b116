"""The Dagger module's function bodies, run here against moto's real S3 and real packages.

No engine runs here, so the engine's objects are stood in for by the few calls the bodies
make on them: a Directory the engine would export to the module's runtime, a File, a
Secret's plaintext. Everything past those calls is the module's real code and the same
pipeline functions the CLI calls; the tests compare the two outcomes object by object.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dagger
import pytest

from devkit.apkfactory import SigningKey, make_index, make_package
from pakman import keys
from tests.support import rig
from tests.support.dagger_standin import Engine, Files, engine_error
from tests.support.deployment import Built
from tests.support.paths import ROOT

try:
    from pakman_ci.main import Pakman, PakmanFailure
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-ci module is not installed (pip install -e ./ci)")
    raise

T = TypeVar("T")
KEYS = keys.generate(2048)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


class HostDirectory:
    """What the bodies call on a dagger.Directory: export to the runtime, read a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def export(self, path: str) -> str:
        shutil.copytree(self.path, path)
        return path

    def file(self, name: str) -> HostFile:
        return HostFile(self.path / name)

    async def entries(self) -> list[str]:
        return sorted(path.name for path in self.path.iterdir())


class HostFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def contents(self) -> str:
        if not self.path.is_file():  # as the engine answers
            raise engine_error(f"{self.path.name}: no such file or directory")
        return self.path.read_text()

    async def export(self, path: str) -> str:
        shutil.copy(self.path, path)
        return path


class PlainSecret:
    def __init__(self, value: str) -> None:
        self.value = value

    async def plaintext(self) -> str:
        return self.value


class ModuleWorkdir:
    """What the merge body calls on ``dag``: the module's working folder, as a File."""

    def current_module(self) -> ModuleWorkdir:
        return self

    def workdir_file(self, name: str) -> HostFile:
        return HostFile(Path(name).resolve())


def test_merge_body_verifies_then_zips_like_the_cli(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman_ci import engine as module_engine

    monkeypatch.setattr(module_engine, "dag", ModuleWorkdir())
    monkeypatch.chdir(tmp_path)
    module: Any = Pakman()
    public = PlainSecret(deployment_files.public_key.read_text())
    made = run(
        module.merge(
            packages=HostDirectory(deployment_files.packages),
            repository="acme/app",
            public_key=public,
        )
    )
    assert made.path.read_bytes() == deployment_files.archive.read_bytes()  # as the CLI's
    with pytest.raises(PakmanFailure, match="a trusted public key is required"):
        run(module.merge(packages=HostDirectory(deployment_files.packages), repository="acme/app"))
    wrong = PlainSecret(keys.generate(2048).public_pem.decode())
    with pytest.raises(PakmanFailure, match="merge refused: verification failed"):
        run(
            module.merge(
                packages=HostDirectory(deployment_files.packages),
                repository="acme/app",
                public_key=wrong,
            )
        )


PLATFORMS = [dagger.Platform("linux/amd64"), dagger.Platform("linux/arm64")]
PUBLIC_PEM, PRIVATE_PEM = KEYS.public_pem.decode(), KEYS.private_pem.decode()
ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# What abuild signs with in each build container: a key made there for that build.
THROWAWAY = {
    arch: SigningKey(keys.generate(2048), f"pakman-build-{arch}.rsa.pub")
    for arch in ARCHES.values()
}


def abuild_output(platform: str, signer: SigningKey | None = None) -> Files:
    """What abuild -r leaves in REPODEST: hello and its -openrc, and their index, all
    signed by the container's throwaway key (or ``signer``)."""
    arch = ARCHES[platform]
    key = signer or THROWAWAY[arch]
    built = [make_package(key, name, "1.0.0-r0", arch) for name in ("hello", "hello-openrc")]
    files = {f"pakman/{arch}/{b.filename}": (b.data, 0o644) for b in built}
    files[f"pakman/{arch}/APKINDEX.tar.gz"] = (make_index(key, built, arch), 0o644)
    return files


def throwaway_public(platform: str, path: str) -> bytes:
    key = THROWAWAY[ARCHES[platform]]
    assert path == f"/home/builder/.abuild/{key.name}", path
    return key.pair.public_pem


def built_by_abuild(**options: Any) -> Engine:
    """An engine whose build containers leave what abuild leaves."""
    return Engine(build_output=abuild_output, container_file=throwaway_public, **options)


def hello(tmp_path: Path, name: str = "hello") -> Path:
    source = tmp_path / name
    shutil.copytree(ROOT / "examples" / "hello", source)
    return source


def build_body(monkeypatch: pytest.MonkeyPatch, engine: Engine, source: Path, **extra: Any) -> Any:
    from pakman_ci import engine as module_engine

    monkeypatch.setattr(module_engine, "dag", engine)
    monkeypatch.chdir(source.parent)  # the module's working folder
    module: Any = Pakman()
    return run(
        module.build(
            source=engine.host_directory(source),
            repository="pakman/hello",
            private_key=engine.secret("private", PRIVATE_PEM),
            public_key=engine.secret("public", PUBLIC_PEM),
            platforms=extra.pop("platforms", PLATFORMS),
            version="1.0.0",
            **extra,
        )
    )


def test_build_reports_a_failed_output_step_and_lets_other_platforms_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the exec loop used to escape as 'unhandled errors in a TaskGroup'
    and cancel the other platforms."""
    engine = built_by_abuild(lost_outputs=("linux/arm64",))
    with pytest.raises(PakmanFailure) as raised:
        build_body(monkeypatch, engine, hello(tmp_path))
    message = str(raised.value)
    assert message.startswith("build failed for linux/arm64 at 'collect the packages' (exit -1)")
    assert "RuntimeError: the engine lost the output's snapshot" in message
    assert "TaskGroup" not in message
    assert engine.finished == ["linux/amd64"]  # not cancelled by the other's failure


def test_build_reports_every_failed_platform_in_platform_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = built_by_abuild(
        lost_outputs=("linux/amd64",),
        fails=lambda args, platform: args == ("abuild", "-r") and platform == "linux/arm64",
    )
    with pytest.raises(PakmanFailure) as raised:
        build_body(monkeypatch, engine, hello(tmp_path))
    first, second = str(raised.value).split("\n\nbuild failed for ")
    assert first.startswith("build failed for linux/amd64 at 'collect the packages'")
    assert second.startswith("linux/arm64 at 'abuild -r' (exit 1)")
    assert "abuild: failed" in second


def test_build_blames_the_set_up_step_that_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing runs until a sync: a failed apk add used to be reported at the first sync,
    'abuild snapshot'."""
    engine = built_by_abuild(
        fails=lambda args, platform: args[:3] == ("apk", "add", "--update-cache")
    )
    with pytest.raises(PakmanFailure) as raised:
        build_body(monkeypatch, engine, hello(tmp_path), platforms=PLATFORMS[:1])
    message = str(raised.value)
    assert message.startswith("build failed for linux/amd64 at 'install the build tools' (exit 1)")
    assert "abuild" not in message.splitlines()[0]
    assert not [e for e in engine.execs if e.args[0] == "abuild"]  # it stopped there


def test_the_apk_cache_is_locked_only_while_apk_installs_the_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine holds a LOCKED volume's lock for every exec it is mounted in: mounted
    into abuild, it would run two builds of one branch and arch one after the other."""
    engine = built_by_abuild()
    build_body(monkeypatch, engine, hello(tmp_path))
    installs = [e for e in engine.execs if e.args[:3] == ("apk", "add", "--update-cache")]
    assert {e.platform for e in installs} == {"linux/amd64", "linux/arm64"}
    for install in installs:
        key, sharing = install.caches["/var/cache/apk"]
        assert (key.startswith("pakman-apk-v3.20-"), sharing) == (True, "LOCKED")
    builds = [e for e in engine.execs if e.args[0] == "abuild"]
    assert len(builds) == 4  # snapshot and -r, per platform
    for build in builds:
        assert "/var/cache/apk" not in build.caches, build.args
        assert build.user == "builder"
        locked = [path for path, (_, sharing) in build.caches.items() if sharing == "LOCKED"]
        assert locked == [], build.args
        assert "/home/builder/.npm" in build.caches  # the language caches stay


def test_the_build_source_is_filtered_and_keyed_by_what_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine applies Ignore only to the CLI's own uploads: a module caller's or a git
    source kept node_modules, old packages and .git. And a copy's exclude leaves the whole
    source in the copy's key: every git fetch, every npm install was a cache miss."""
    clean = hello(tmp_path, "clean")
    messy = hello(tmp_path, "messy")
    for path, data in {
        "node_modules/left-pad/index.js": "x",
        "packages/pakman/x86_64/hello-0.9.0-r0.apk": "old",
        "packages.zip": "old",
        ".git/FETCH_HEAD": "abc\n",
        ".venv/bin/python": "",
    }.items():
        (messy / path).parent.mkdir(parents=True, exist_ok=True)
        (messy / path).write_text(data)
    digests = []
    for source in (clean, messy):
        engine = built_by_abuild()
        build_body(monkeypatch, engine, source, platforms=PLATFORMS[:1])
        workspace = engine.copied["/home/builder/workspace"]
        assert "hello.sh" in workspace
        assert [
            p for p in workspace if p.startswith(("node_modules", "packages", ".git", ".venv"))
        ] == []
        digests.append([e.digest for e in engine.execs if e.args[0] == "abuild"])
    assert digests[0] == digests[1]  # the same cached abuild layers


def test_no_call_the_module_makes_carries_private_key_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-sensitive arguments go verbatim to telemetry and --debug output
    (dagql/result_call_frame.go); only a Secret's ID may carry a key."""
    from pakman_ci import engine as module_engine

    monkeypatch.chdir(tmp_path)  # the module's working folder
    engine = built_by_abuild()
    monkeypatch.setattr(module_engine, "dag", engine)
    module: Any = Pakman()
    made = module.keygen(repository="acme/app")
    made = run(made) if asyncio.iscoroutine(made) else made
    files = engine.files(made)
    private, public = files["acme-app.rsa"], files["acme-app.rsa.pub"]
    assert private[0].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (private[1], public[1]) == (0o600, 0o644)
    assert keys.load_public(public[0])  # a pair: the public half loads
    build_body(monkeypatch, engine, hello(tmp_path))
    said = "\n".join(call.args for call in engine.calls)
    assert engine.calls, "nothing recorded"
    for pem in (private[0].decode(), PRIVATE_PEM):
        for line in pem.splitlines()[1:-1]:
            assert line not in said
    assert "PRIVATE KEY" not in said


def test_the_build_container_gets_no_key_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """abuild -r runs the application's own install scripts: nothing of the real key may
    be mounted, written or passed where it runs (issue 26)."""
    engine = built_by_abuild()
    build_body(monkeypatch, engine, hello(tmp_path))
    secret_ids = {
        repr(engine.secret("private", PRIVATE_PEM)),
        repr(engine.secret("public", PUBLIC_PEM)),
    }
    for call in engine.calls:
        if call.kind in ("Container", "Directory"):
            assert call.field not in ("with_mounted_secret", "with_secret_variable"), call
            assert not any(secret in call.args for secret in secret_ids), call
    assert [e.secrets for e in engine.execs if e.secrets] == []
    said = "\n".join(call.args for call in engine.calls)
    for pem in (PRIVATE_PEM, PUBLIC_PEM):
        for line in pem.splitlines()[1:-1]:
            assert line not in said
    # The container's own throwaway key, made by a step of the recipe, signs in there.
    keygen = [e for e in engine.execs if e.args[:2] == ("sh", "-c") and "genrsa" in e.args[2]]
    assert {e.platform for e in keygen} == {"linux/amd64", "linux/arm64"}
    assert all(e.user == "builder" for e in keygen)


def test_build_refuses_packages_its_own_build_keys_did_not_sign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what this build's containers signed is re-signed with the real key."""
    stranger = SigningKey(keys.generate(2048), "pakman-build-aarch64.rsa.pub")
    engine = Engine(
        build_output=lambda platform: abuild_output(
            platform, stranger if platform == "linux/arm64" else None
        ),
        container_file=throwaway_public,
    )
    with pytest.raises(PakmanFailure, match=r"pakman/aarch64/hello-1\.0\.0-r0\.apk"):
        build_body(monkeypatch, engine, hello(tmp_path))
    # Refused before anything was written: what abuild made is there as it made it.
    made = {data for p in PLATFORMS for data, _ in engine.build_output(str(p)).values()}
    left = [p.read_bytes() for p in tmp_path.glob("packages-*/pakman/*/*")]
    assert len(left) == 6
    assert set(left) <= made


def test_build_refuses_a_public_key_that_is_not_the_private_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman_ci import engine as module_engine

    engine = built_by_abuild()
    monkeypatch.setattr(module_engine, "dag", engine)
    monkeypatch.chdir(tmp_path)
    other = keys.generate(2048).public_pem.decode()
    module: Any = Pakman()
    with pytest.raises(PakmanFailure, match="build refused: verification failed"):
        run(
            module.build(
                source=engine.host_directory(hello(tmp_path)),
                repository="pakman/hello",
                private_key=engine.secret("private", PRIVATE_PEM),
                public_key=engine.secret("public", other),
                platforms=PLATFORMS[:1],
                version="1.0.0",
            )
        )


def test_a_bad_private_key_is_named_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman_ci import engine as module_engine

    engine = built_by_abuild()
    monkeypatch.setattr(module_engine, "dag", engine)
    monkeypatch.chdir(tmp_path)
    damaged = PRIVATE_PEM[:300] + PRIVATE_PEM[-40:]  # a PEM that no longer parses
    module: Any = Pakman()
    with pytest.raises(PakmanFailure) as raised:
        run(
            module.build(
                source=engine.host_directory(hello(tmp_path)),
                repository="pakman/hello",
                private_key=engine.secret("private", damaged),
                public_key=engine.secret("public", PUBLIC_PEM),
                platforms=PLATFORMS[:1],
                version="1.0.0",
            )
        )
    assert str(raised.value) == "private-key: not an unencrypted PEM private key"
    for line in PRIVATE_PEM.splitlines()[1:-1]:
        assert line[:20] not in str(raised.value)
