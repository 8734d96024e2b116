"""The Dagger module's function bodies, run here against moto's real S3 and real packages.

No engine runs here, so the engine's objects are stood in for by the few calls the bodies
make on them: a Directory the engine would export to the module's runtime, a File, a
Secret's plaintext. Everything past those calls is the module's real code and the same
pipeline functions the CLI calls; the tests compare the two outcomes object by object.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_package
from devkit.s3 import S3Server
from pakman import keys
from tests.support import rig
from tests.support.cli import run_pakman
from tests.support.deployment import Built
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA, Instellar
from tests.support.paths import V8_CONFIGS
from tests.unit.test_dagger_bodies import HostDirectory, HostFile, PlainSecret, run

try:
    from pakman_ci.main import Pakman, PakmanFailure
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-ci module is not installed (pip install -e ./ci)")
    raise


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


def test_repo_body_adds_to_the_repository_in_the_bucket(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    from devkit.apkfactory import write_repo
    from pakman.repo import index

    key = SigningKey(keys.generate(2048), "acme-app.rsa.pub")
    write_repo(tmp_path / "packages" / "acme", key, [make_package(key, "app", "1.0.0-r0")])
    module: Any = Pakman()
    bare = tmp_path / "bare"  # a source without a config: the default branch, as the CLI
    bare.mkdir()

    def repo(**extra: Any) -> str:
        extra.setdefault("source", HostDirectory(bare))
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
    (source / "instellar.yml").write_text("stack: [\n")
    with pytest.raises(PakmanFailure, match=r"instellar\.yml"):  # a broken one is refused
        repo(source=HostDirectory(source))
