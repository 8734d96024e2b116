"""The Dagger module's function bodies, run here against moto's real S3 and real packages.

No engine runs here, so the engine's objects are stood in for by the few calls the bodies
make on them: a Directory the engine would export to the module's runtime, a File, a
Secret's plaintext. Everything past those calls is the module's real code and the same
pipeline functions the CLI calls; the tests compare the two outcomes object by object.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import dagger
import pytest

from pakman import keys
from tests import rig
from tests.conftest import AUTH, PACKAGE_TOKEN, ROOT, SHA, V8_CONFIGS, Built, run_pakman
from tests.servers import Instellar, S3Server

try:
    from pakman_ci.main import Pakman, PakmanFailure
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-ci module is not installed (pip install -e ./ci)")
    raise

T = TypeVar("T")


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
        return self.path.read_text()

    async def export(self, path: str) -> str:
        shutil.copy(self.path, path)
        return path


class PlainSecret:
    def __init__(self, value: str) -> None:
        self.value = value

    async def plaintext(self) -> str:
        return self.value


def publish_body(built: Built, bucket: str, s3: S3Server, **options: Any) -> dict[str, Any]:
    module: Any = Pakman()
    result = run(
        module.publish(
            packages=HostDirectory(built.packages),
            repository="acme/app",
            sha=SHA,
            bucket=bucket,
            access_key_id=PlainSecret(s3.access_key_id),
            secret_access_key=PlainSecret(s3.secret_access_key),
            endpoint=s3.endpoint,
            **options,
        )
    )
    return dict(json.loads(result))


def objects(s3: S3Server, bucket: str) -> dict[str, tuple[int, str]]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: (o["Size"], o["ETag"]) for o in listed}


def manifest(s3: S3Server, bucket: str) -> dict[str, Any]:
    key = f"deployments/acme/app/{SHA}/manifest.json"
    body = json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    body.pop("created_at")
    return dict(body)


def test_publish_body_matches_the_cli_object_for_object(
    deployment_files: Built, s3_server: S3Server, bucket: str
) -> None:
    public_pem = deployment_files.public_key.read_text()
    summary = publish_body(deployment_files, bucket, s3_server, public_key=PlainSecret(public_pem))
    assert summary["uploaded"] == deployment_files.files + 2  # packages, archive, manifest
    # The CLI, on the same tree, into a second bucket: the same objects and manifest.
    other = bucket + "-cli"
    s3_server.client().create_bucket(Bucket=other)
    cli = run_pakman(
        "publish",
        str(deployment_files.packages),
        "--bucket",
        other,
        "--repository",
        "acme/app",
        "--sha",
        SHA,
        "--key",
        str(deployment_files.public_key),
        env=s3_server.env(),
    )
    assert cli.returncode == 0, cli.stderr
    ours, theirs = objects(s3_server, bucket), objects(s3_server, other)
    manifest_key = f"deployments/acme/app/{SHA}/manifest.json"
    assert set(ours) == set(theirs)
    # Byte for byte, but for the manifest's created_at, compared without it below.
    assert {k: v for k, v in ours.items() if k != manifest_key} == {
        k: v for k, v in theirs.items() if k != manifest_key
    }
    assert manifest(s3_server, bucket) == manifest(s3_server, other)
    assert manifest(s3_server, bucket)["key_fingerprint"].startswith("sha256:")
    # And a retry (a re-run deploy) uploads nothing.
    again = publish_body(deployment_files, bucket, s3_server, public_key=PlainSecret(public_pem))
    assert again["uploaded"] == 0


def test_publish_body_refuses_without_a_key_unless_skipped(
    deployment_files: Built, s3_server: S3Server, bucket: str
) -> None:
    """It used to upload unverified packages silently when --public-key was left out."""
    with pytest.raises(PakmanFailure, match="a trusted public key is required"):
        publish_body(deployment_files, bucket, s3_server)
    assert objects(s3_server, bucket) == {}
    skipped = publish_body(deployment_files, bucket, s3_server, skip_verify=True)
    assert skipped["uploaded"] == deployment_files.files + 2
    assert manifest(s3_server, bucket)["key_fingerprint"] is None  # says it was not verified


def test_publish_body_refuses_a_tampered_package(
    deployment_files: Built, s3_server: S3Server, bucket: str
) -> None:
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    data = bytearray(package.read_bytes())
    data[-40] ^= 0xFF  # inside the data stream: datahash no longer matches
    package.write_bytes(bytes(data))
    public_pem = deployment_files.public_key.read_text()
    with pytest.raises(PakmanFailure, match=r"acme/x86_64/app0-1\.0\.0-r0\.apk") as raised:
        publish_body(deployment_files, bucket, s3_server, public_key=PlainSecret(public_pem))
    assert "publish refused: verification failed" in str(raised.value)
    assert objects(s3_server, bucket) == {}


def test_publish_body_uses_a_given_archive(
    deployment_files: Built, s3_server: S3Server, bucket: str
) -> None:
    summary = publish_body(
        deployment_files,
        bucket,
        s3_server,
        skip_verify=True,
        archive=HostFile(deployment_files.archive),
        region="",
    )
    digest = hashlib.sha256(deployment_files.archive.read_bytes()).hexdigest()
    assert summary["archive_path"] == f"archives/{digest}/packages.zip"


def test_deploy_body_registers_the_deployment(
    api: Instellar, deployment_files: Built, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(V8_CONFIGS / "rails.yml", source / "instellar.yml")
    module: Any = Pakman()
    result = run(
        module.deploy(
            source=HostDirectory(source),
            packages=HostDirectory(deployment_files.packages),
            repository="acme/app",
            sha=SHA,
            ref="refs/heads/main",
            public_key=PlainSecret(deployment_files.public_key.read_text()),
            instellar_auth_token=PlainSecret(AUTH),
            instellar_package_token=PlainSecret(PACKAGE_TOKEN),
            instellar_endpoint=api.endpoint,
        )
    )
    pushed = json.loads(result)
    assert pushed["deployment"] == "created"
    assert pushed["configuration"] == "created"
    assert pushed["upload"]["uploaded"] == deployment_files.files + 2
    assert api.paths()[-2:] == [
        "POST /publish/deployments",
        "POST /publish/deployments/1/configurations",
    ]
    for secret in (AUTH, PACKAGE_TOKEN):
        assert secret not in result


def test_check_body_says_what_the_cli_says(tmp_path: Path) -> None:
    shutil.copy(V8_CONFIGS / "rails.yml", tmp_path / "instellar.yml")
    module: Any = Pakman()
    said = run(module.check(source=HostDirectory(tmp_path)))
    cli = run_pakman("check", "--config", str(tmp_path / "instellar.yml"))
    assert said.splitlines()[0] == cli.stdout.strip().replace(str(tmp_path) + "/", "")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "instellar.yml").write_text("type: nonsense\n")
    with pytest.raises(PakmanFailure, match="type: must be one of default, static, custom"):
        run(module.check(source=HostDirectory(broken)))


class ModuleWorkdir:
    """What the merge body calls on ``dag``: the module's working folder, as a File."""

    def current_module(self) -> ModuleWorkdir:
        return self

    def workdir_file(self, name: str) -> HostFile:
        return HostFile(Path(name).resolve())


def test_merge_body_verifies_then_zips_like_the_cli(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman_ci import main as module_main

    monkeypatch.setattr(module_main, "dag", ModuleWorkdir())
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


class EngineContainer:
    """What build's body calls on a dagger.Container. Builder calls return the container;
    ``sync()`` runs the pending exec, failing where the test says; reading the output
    folder fails for the platforms in ``broken_output``."""

    def __init__(self, engine: BuildEngine, platform: str) -> None:
        self.engine, self.platform = engine, platform
        self.pending: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    def with_exec(self, args: list[str]) -> EngineContainer:
        self.pending = args
        return self

    async def stdout(self) -> str:  # the git probe: no repository, the defaults
        return ""

    async def sync(self) -> EngineContainer:
        await asyncio.sleep(0.05)  # other platforms run meanwhile
        failing = self.engine.failing_exec.get(self.platform)
        if failing is not None and self.pending[: len(failing)] == failing:
            error = Exception.__new__(dagger.ExecError)  # as the SDK raises it, minus the query
            error.exit_code, error.stdout, error.stderr = 1, "", "abuild: no such package"
            raise error
        return self

    def directory(self, path: str) -> EngineOutput:
        return EngineOutput(self.engine, self.platform)


class EngineOutput:
    def __init__(self, engine: BuildEngine, platform: str) -> None:
        self.engine, self.platform = engine, platform

    async def sync(self) -> EngineOutput:
        if self.platform in self.engine.broken_output:
            raise RuntimeError("the engine lost the output's snapshot")
        await asyncio.sleep(0.2)  # a platform that finishes well after the other failed
        self.engine.finished.append(self.platform)
        return self

    def __getattr__(self, name: str) -> Any:  # with_new_file, with_directory
        return lambda *args, **kwargs: self


class BuildEngine:
    """What build's body calls on ``dag``: containers per platform, a folder to merge into."""

    def __init__(
        self,
        broken_output: tuple[str, ...] = (),
        failing_exec: dict[str, list[str]] | None = None,
    ) -> None:
        self.broken_output = broken_output
        self.failing_exec = failing_exec or {}
        self.finished: list[str] = []

    def container(self, platform: Any = None) -> EngineContainer:
        return EngineContainer(self, str(platform or "linux/amd64"))

    def directory(self) -> EngineOutput:
        return EngineOutput(self, "merged")

    def cache_volume(self, key: str) -> str:
        return key


def build_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: BuildEngine) -> Any:
    from pakman_ci import main as module_main

    source = tmp_path / "hello"
    shutil.copytree(ROOT / "examples" / "hello", source)
    monkeypatch.setattr(module_main, "dag", engine)
    module: Any = Pakman()
    return run(
        module.build(
            source=HostDirectory(source),
            repository="pakman/hello",
            private_key=PlainSecret("private"),
            public_key=PlainSecret("public"),
            platforms=[dagger.Platform("linux/amd64"), dagger.Platform("linux/arm64")],
            version="1.0.0",
        )
    )


def test_build_reports_a_failed_output_step_and_lets_other_platforms_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the exec loop used to escape as 'unhandled errors in a TaskGroup'
    and cancel the other platforms."""
    engine = BuildEngine(broken_output=("linux/arm64",))
    with pytest.raises(PakmanFailure) as raised:
        build_body(tmp_path, monkeypatch, engine)
    message = str(raised.value)
    assert message.startswith("build failed for linux/arm64 at 'collect the packages' (exit -1)")
    assert "RuntimeError: the engine lost the output's snapshot" in message
    assert "TaskGroup" not in message
    assert engine.finished == ["linux/amd64"]  # not cancelled by the other's failure


def test_build_reports_every_failed_platform_in_platform_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = BuildEngine(
        broken_output=("linux/amd64",), failing_exec={"linux/arm64": ["abuild", "-r"]}
    )
    with pytest.raises(PakmanFailure) as raised:
        build_body(tmp_path, monkeypatch, engine)
    first, second = str(raised.value).split("\n\nbuild failed for ")
    assert first.startswith("build failed for linux/amd64 at 'collect the packages'")
    assert second.startswith("linux/arm64 at 'abuild -r' (exit 1)")
    assert "abuild: no such package" in second


def test_build_returns_the_merged_outputs_when_every_platform_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = BuildEngine()
    assert isinstance(build_body(tmp_path, monkeypatch, engine), EngineOutput)
    assert sorted(engine.finished) == ["linux/amd64", "linux/arm64"]


def test_repo_body_adds_to_the_repository_in_the_bucket(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    from pakman.serve import index
    from tests.apkfactory import SigningKey, make_package, write_repo

    key = SigningKey(keys.generate(2048), "acme-app.rsa.pub")
    write_repo(tmp_path / "packages" / "acme", key, [make_package(key, "app", "1.0.0-r0")])
    module: Any = Pakman()

    def repo(**extra: Any) -> str:
        return str(
            run(
                module.repo(
                    packages=HostDirectory(tmp_path / "packages"),
                    repository="acme/app",
                    public_key=PlainSecret(key.pair.public_pem.decode()),
                    private_key=PlainSecret(key.pair.private_pem.decode()),
                    bucket=bucket,
                    access_key_id=PlainSecret(s3_server.access_key_id),
                    secret_access_key=PlainSecret(s3_server.secret_access_key),
                    endpoint=s3_server.endpoint,
                    **extra,
                )
            )
        )

    result = repo()
    where = "alpine/v3.23/acme/x86_64/APKINDEX.tar.gz"
    assert json.loads(result)["indexes"][where]["added"] == ["app-1.0.0-r0.apk"]
    stored = s3_server.client().get_object(Bucket=bucket, Key=where)["Body"].read()
    trusted = {key.name: keys.load_public(key.pair.public_pem)}
    assert [r["P"] for r in index.read(stored, where, trusted)] == ["app"]
    assert "PRIVATE KEY" not in result
    # As the CLI's --branch: given, or else the stack of the source's config.
    source = tmp_path / "source"
    source.mkdir()
    (source / "instellar.yml").write_text(
        "stack: alpine/3.20\ntype: static\ndependencies: {}\nbuild: {command: x}\n"
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"source": HostDirectory(source)}, "v3.20"),
        ({"branch": "edge", "source": HostDirectory(source)}, "edge"),
    ]
    for extra, branch in cases:
        again = repo(**extra)
        indexes = list(json.loads(again)["indexes"])
        assert indexes == [f"alpine/{branch}/acme/x86_64/APKINDEX.tar.gz"]
