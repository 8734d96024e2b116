"""The shared pipeline's option resolution and policy: what the CLI and the module agree on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pakman import keys, merge, pipeline, tree
from pakman.digest import digest_file
from pakman.errors import ConfigError, VerificationError
from pakman.identity import Identity, build_number
from pakman.merge import SCRATCH, archive_for
from pakman.placement import v8_archive
from pakman.publish.deployment import Deployment
from pakman.storage.options import AddressingStyle, StoreOptions
from pakman.trust import Trust, trust_files, trust_for_push, trust_pem
from tests.support.deployment import Built

IDENTITY = Identity("acme/app")


def test_store_options_take_arguments_then_the_environment() -> None:
    default = StoreOptions.resolve({}, bucket="b")
    assert (default.region, default.endpoint, default.concurrency) == ("us-east-1", None, 8)
    assert default.addressing_style is AddressingStyle.AUTO
    env = {
        "AWS_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "https://generic.example",
        "AWS_ENDPOINT_URL_S3": "https://s3.example",
    }
    from_env = StoreOptions.resolve(env, bucket="b")
    assert (from_env.region, from_env.endpoint) == ("eu-west-3", "https://s3.example")
    given = StoreOptions.resolve(
        env,
        bucket="b",
        region="ap-south-1",
        endpoint="https://mine.example",
        addressing_style="path",
    )
    assert (given.region, given.endpoint) == ("ap-south-1", "https://mine.example")
    assert given.addressing_style is AddressingStyle.PATH


def test_store_options_secrets_stay_out_of_repr() -> None:
    options = StoreOptions.resolve(
        {}, bucket="b", access_key_id="AKIDSECRET", secret_access_key="SKSECRET"
    )
    assert "SECRET" not in repr(options)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"addressing_style": "sideways"}, "--addressing-style: must be auto, path or virtual"),
        ({"concurrency": 0}, "--concurrency: must be 1 to 64"),
        ({"concurrency": 10_000}, "--concurrency: must be 1 to 64"),
    ],
)
def test_store_options_reject_bad_values(given: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StoreOptions.resolve({}, bucket="b", **given)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["²", " 7", "-1", "1.5", "٣"])
def test_build_numbers_are_ascii_digits(value: str) -> None:
    with pytest.raises(ConfigError, match="--build: must be a whole number"):
        build_number(value)


def test_deployment_reads_v8_variables() -> None:
    env = {
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_SHA": "a" * 40,
        "WORKFLOW_SHA": "b" * 40,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_NUMBER": "12",
    }
    target = Deployment.resolve(None, None, None, None, env)
    assert (target.sha, target.ref, target.identity.build) == ("b" * 40, "refs/heads/main", 12)
    explicit = Deployment.resolve("acme/other", "c" * 40, "refs/tags/v1", 3, env)
    assert (explicit.identity.slug, explicit.sha, explicit.identity.build) == ("other", "c" * 40, 3)
    with pytest.raises(ConfigError, match="--repository: required"):
        Deployment.resolve(None, "a" * 40, env={})


def test_verification_is_required_unless_skipped(deployment_files: Built) -> None:
    packages = deployment_files.packages
    with pytest.raises(ConfigError, match="a trusted public key is required"):
        pipeline.verify(packages, tree.files(packages), Trust(), "publish")
    skipped = pipeline.verify(packages, tree.files(packages), Trust(skip=True), "publish")
    assert (skipped.fingerprint, dict(skipped.digests)) == (None, {})
    trust = trust_files([str(deployment_files.public_key)])
    verified = pipeline.verify(packages, tree.files(packages), trust, "publish", digests=True)
    assert verified.fingerprint == "sha256:" + keys.fingerprint(
        deployment_files.public_key.read_bytes()
    )
    # The digests of the very bytes verified, for every package and index.
    files = sorted(p for p in deployment_files.packages.rglob("*") if p.is_file())
    assert sorted(verified.digests) == files
    for path in files:
        assert verified.digests[path] == digest_file(path)
    other = keys.generate(2048)
    wrong = trust_pem(other.public_pem, IDENTITY)
    with pytest.raises(VerificationError, match="publish refused: verification failed"):
        pipeline.verify(packages, tree.files(packages), wrong, "publish")


def test_push_finds_keys_as_v8_jobs_have_them(deployment_files: Built, tmp_path: Path) -> None:
    pem = deployment_files.public_key.read_bytes()
    home = tmp_path / "home"
    found = trust_for_push([], IDENTITY, {}, home, skip=False)
    assert (dict(found.keys), found.required) == ({}, False)  # warns, as v8 never verified
    (home / ".abuild").mkdir(parents=True)
    (home / ".abuild" / "acme-app.rsa.pub").write_bytes(pem)
    assert trust_for_push([], IDENTITY, {}, home, skip=False).keys == {"acme-app.rsa.pub": pem}
    env = {"ABUILD_PUBLIC_KEY": "from-env"}
    assert trust_for_push([], IDENTITY, env, home, skip=False).keys == {
        "acme-app.rsa.pub": b"from-env"
    }
    given = trust_for_push([str(deployment_files.public_key)], IDENTITY, env, home, skip=False)
    assert given.keys == {"acme-app.rsa.pub": pem}
    assert given.required


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--key: .*nope\.pub: cannot read"):
        trust_files([str(tmp_path / "nope.pub")])


def test_an_archive_is_made_when_none_is_given(deployment_files: Built, tmp_path: Path) -> None:
    logged: list[str] = []
    walked = tree.snapshot(deployment_files.packages)
    with archive_for(walked, None, logged.append) as made:
        assert made.read_bytes() == deployment_files.archive.read_bytes()  # deterministic
        assert str(made.parent) in SCRATCH  # the watchdog removes it too
    assert not made.exists()  # a temporary, gone afterwards
    assert set() == SCRATCH
    assert logged
    assert "no archive given" in logged[0]
    with archive_for(walked, deployment_files.archive) as given:
        assert given == deployment_files.archive


def test_v8_archive_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    assert v8_archive("packages.zip", home) is None
    (home / "packages.zip").write_bytes(b"zip")
    assert v8_archive("packages.zip", home) == home / "packages.zip"
    (tmp_path / "packages.zip").write_bytes(b"zip")
    assert v8_archive("packages.zip", home) == Path("packages.zip")


def test_merge_verifies_the_merged_tree(deployment_files: Built, tmp_path: Path) -> None:
    trust = trust_files([str(deployment_files.public_key)])
    merged, digest = pipeline.merge([deployment_files.packages], tmp_path / "out.zip", trust)
    assert merged.architectures == ["aarch64", "x86_64"]
    assert (tmp_path / "out.zip").read_bytes() == deployment_files.archive.read_bytes()
    assert len(digest) == 64
    with pytest.raises(ConfigError, match="a trusted public key is required"):
        pipeline.merge([deployment_files.packages], tmp_path / "x.zip", Trust())
    assert not (tmp_path / "x.zip").exists()
    pipeline.merge([deployment_files.packages], tmp_path / "y.zip", Trust(skip=True))
    assert merge.consumer_view(tmp_path / "y.zip") == merge.consumer_view(deployment_files.archive)


def test_every_run_verifies_reading_each_file_once(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing proved in an earlier run is trusted, and nothing is read twice in a run:
    each package is read once, by verification, whose digests publish ships."""
    from pakman import apk, digest
    from pakman.publish import plan as planning
    from pakman.publish.archive import ArchiveRead, read_archive

    store = StoreOptions.resolve({}, store=f"file://{tmp_path / 's'}", create_bucket=True)
    trust = trust_files([str(deployment_files.public_key)])
    target = Deployment.resolve("acme/app", "a" * 40)
    reads: list[Path] = []
    hashed: list[Path] = []
    read_package, digest_file_ = apk.read_package, digest.digest_file

    def reading(path: Path, *, digest: bool = False) -> apk.Package:
        assert digest  # what is shipped is described by the bytes verification read
        reads.append(path)
        return read_package(path, digest=digest)

    def hashing(path: Path) -> digest.Digest:
        hashed.append(path)
        return digest_file_(path)

    def reading_archive(path: Path) -> ArchiveRead | None:
        hashed.append(path)
        return read_archive(path)

    monkeypatch.setattr(apk, "read_package", reading)
    monkeypatch.setattr(digest, "digest_file", hashing)  # the pipeline's unverified files
    monkeypatch.setattr(planning, "digest_file", hashing)  # an archive read_archive refused
    monkeypatch.setattr(planning, "read_archive", reading_archive)  # the archive
    first = pipeline.publish(deployment_files.packages, None, target, trust, store)
    assert len(first.uploaded) == deployment_files.files + 2
    packages = sorted(deployment_files.packages.rglob("*.apk"))
    assert sorted(reads) == packages  # each once
    assert [p.name for p in hashed] == ["packages.zip"]  # only the archive is hashed apart
    reads.clear()
    again = pipeline.publish(deployment_files.packages, None, target, trust, store)
    assert again.uploaded == []
    assert sorted(reads) == packages  # verified again, from the bytes
    # A package changed since: verified again, and refused.
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    data = bytearray(package.read_bytes())
    data[-40] ^= 0xFF
    package.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        pipeline.publish(deployment_files.packages, None, target, trust, store)


def test_a_run_reads_each_key_once(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are parsed once per run, into the Trust, whatever uses them after."""
    from devkit.apkfactory import SigningKey, make_package, write_repo

    pair = keys.generate(2048)
    key = SigningKey(pair, "acme-app.rsa.pub")
    write_repo(
        tmp_path / "in" / "acme", key, [make_package(key, "app", "1.0-r0", "x86_64")], "x86_64"
    )
    public = key.write_public(tmp_path / "repo-keys")
    parsed: list[str] = []
    for name in ("load_public", "load_private"):
        real = getattr(keys, name)

        def counting(*args: object, _real: Any = real, _name: str = name) -> object:
            parsed.append(_name)
            return _real(*args)

        monkeypatch.setattr(keys, name, counting)
    store = StoreOptions.resolve({}, store=f"file://{tmp_path / 's'}", create_bucket=True)
    trust = trust_files([str(public)])
    pipeline.repo([tmp_path / "in"], trust, pair.private_pem, store, branch="v3.23")
    assert sorted(parsed) == ["load_private", "load_public"]
    parsed.clear()
    trust = trust_files([str(deployment_files.public_key)])
    target = Deployment.resolve("acme/app", "0123abcd")
    pipeline.publish(deployment_files.packages, None, target, trust, store)
    assert parsed == ["load_public"]
