"""S3 behind an in-house certificate authority, as self-hosted stores often are: the CA
named by AWS_CA_BUNDLE is trusted, as botocore and the AWS CLI trust it, by every request
of a publish (botocore's and the reads without it); no CA, no publish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.s3 import S3Server, versitygw_server
from devkit.tls import private_ca
from tests.support.cli import one_line_error, run_pakman
from tests.support.deployment import Built
from tests.support.instellar import SHA


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with versitygw_server(tls=private_ca(tmp_path_factory.mktemp("ca"))) as server:
        yield server


def publish(server: S3Server, built: Built, bucket: str) -> list[str]:
    return [
        "publish", str(built.packages), "--archive", str(built.archive),
        "--key", str(built.public_key), "--repository", "acme/app", "--sha", SHA,
        "--bucket", bucket, "--endpoint", server.endpoint,
    ]  # fmt: skip


def environment(server: S3Server, home: Path, **extra: str) -> dict[str, str]:
    """The variables a run sets over this process's own (run_pakman passes those on)."""
    return {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
        **extra,
    }


def test_the_ca_in_aws_ca_bundle_is_trusted(
    tls_server: S3Server, deployment_files: Built, tmp_path: Path
) -> None:
    assert tls_server.ca is not None
    tls_server.client().create_bucket(Bucket="private-ca")
    args = publish(tls_server, deployment_files, "private-ca")
    env = environment(tls_server, tmp_path, AWS_CA_BUNDLE=str(tls_server.ca))
    first = run_pakman(*args, env=env)
    assert first.returncode == 0, first.stderr[-800:]
    again = run_pakman(*args, env=env)  # the reads without botocore, over TLS
    assert again.returncode == 0, again.stderr[-800:]
    assert "uploaded 0 object(s)" in again.stdout + again.stderr


def test_without_the_ca_nothing_is_published(
    tls_server: S3Server, deployment_files: Built, tmp_path: Path
) -> None:
    tls_server.client().create_bucket(Bucket="unknown-ca")
    args = publish(tls_server, deployment_files, "unknown-ca")
    refused = run_pakman(*args, env=environment(tls_server, tmp_path))
    one_line_error(refused, 3, "TLS: the endpoint's certificate is not trusted", "AWS_CA_BUNDLE")
    assert tls_server.secret_access_key not in refused.stderr
    listed = tls_server.client().list_objects_v2(Bucket="unknown-ca")
    assert listed.get("KeyCount", 0) == 0


def test_no_verify_tls_publishes_to_an_unknown_ca(
    tls_server: S3Server, deployment_files: Built, tmp_path: Path
) -> None:
    tls_server.client().create_bucket(Bucket="unverified")
    args = publish(tls_server, deployment_files, "unverified")
    env = environment(tls_server, tmp_path)
    for _ in range(2):  # a first publish, then the reads without botocore
        done = run_pakman(*args, "--no-verify-tls", env=env)
        assert done.returncode == 0, done.stderr[-800:]


def test_the_ca_named_in_the_aws_config_is_trusted(
    tls_server: S3Server, deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ca_bundle` in the AWS config file, as the AWS CLI reads it (the reads without
    botocore stand aside where a config file exists). AWS_CA_BUNDLE, which would come
    first, is not set."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)  # run_pakman passes the rest on
    assert tls_server.ca is not None
    tls_server.client().create_bucket(Bucket="config-ca")
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nca_bundle = {tls_server.ca}\n")
    args = publish(tls_server, deployment_files, "config-ca")
    env = environment(tls_server, tmp_path, AWS_CONFIG_FILE=str(config))
    for _ in range(2):  # a first publish, then a re-publish, botocore's reads throughout
        done = run_pakman(*args, env=env)
        assert done.returncode == 0, done.stderr[-800:]
