"""The shared pipeline's option resolution and policy: what the CLI and the module agree on."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from pakman import keys, merge, pipeline
from pakman.errors import ConfigError, VerificationError
from pakman.identity import Identity
from tests.conftest import Built

IDENTITY = Identity("acme/app")


def test_store_options_take_arguments_then_the_environment() -> None:
    default = pipeline.StoreOptions.resolve({}, bucket="b")
    assert (default.region, default.endpoint, default.concurrency) == ("us-east-1", None, 8)
    assert default.addressing_style is pipeline.AddressingStyle.AUTO
    env = {
        "AWS_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "https://generic.example",
        "AWS_ENDPOINT_URL_S3": "https://s3.example",
    }
    from_env = pipeline.StoreOptions.resolve(env, bucket="b")
    assert (from_env.region, from_env.endpoint) == ("eu-west-3", "https://s3.example")
    given = pipeline.StoreOptions.resolve(
        env,
        bucket="b",
        region="ap-south-1",
        endpoint="https://mine.example",
        addressing_style="path",
    )
    assert (given.region, given.endpoint) == ("ap-south-1", "https://mine.example")
    assert given.addressing_style is pipeline.AddressingStyle.PATH


def test_store_options_secrets_stay_out_of_repr() -> None:
    options = pipeline.StoreOptions.resolve(
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
        pipeline.StoreOptions.resolve({}, bucket="b", **given)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["²", " 7", "-1", "1.5", "٣"])
def test_build_numbers_are_ascii_digits(value: str) -> None:
    with pytest.raises(ConfigError, match="--build: must be a whole number"):
        pipeline.build_number(value)


def test_deployment_reads_v8_variables() -> None:
    env = {
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_SHA": "a" * 40,
        "WORKFLOW_SHA": "b" * 40,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_NUMBER": "12",
    }
    target = pipeline.deployment(None, None, None, None, env)
    assert (target.sha, target.ref, target.identity.build) == ("b" * 40, "refs/heads/main", 12)
    explicit = pipeline.deployment("acme/other", "c" * 40, "refs/tags/v1", 3, env)
    assert (explicit.identity.slug, explicit.sha, explicit.identity.build) == ("other", "c" * 40, 3)
    with pytest.raises(ConfigError, match="--repository: required"):
        pipeline.deployment(None, "a" * 40, env={})


def test_verification_is_required_unless_skipped(deployment_files: Built) -> None:
    with pytest.raises(ConfigError, match="a trusted public key is required"):
        pipeline.verify(deployment_files.packages, pipeline.Trust(), "publish")
    assert pipeline.verify(deployment_files.packages, pipeline.Trust(skip=True), "publish") is None
    trust = pipeline.trust_files([str(deployment_files.public_key)])
    fingerprint = pipeline.verify(deployment_files.packages, trust, "publish")
    assert fingerprint == "sha256:" + keys.fingerprint(deployment_files.public_key.read_bytes())
    other = keys.generate(2048)
    wrong = pipeline.trust_pem(other.public_pem, IDENTITY)
    with pytest.raises(VerificationError, match="publish refused: verification failed"):
        pipeline.verify(deployment_files.packages, wrong, "publish")


def test_push_finds_keys_as_v8_jobs_have_them(deployment_files: Built, tmp_path: Path) -> None:
    pem = deployment_files.public_key.read_bytes()
    home = tmp_path / "home"
    found = pipeline.trust_for_push([], IDENTITY, {}, home, skip=False)
    assert (dict(found.keys), found.required) == ({}, False)  # warns, as v8 never verified
    (home / ".abuild").mkdir(parents=True)
    (home / ".abuild" / "acme-app.rsa.pub").write_bytes(pem)
    assert pipeline.trust_for_push([], IDENTITY, {}, home, skip=False).keys == {
        "acme-app.rsa.pub": pem
    }
    env = {"ABUILD_PUBLIC_KEY": "from-env"}
    assert pipeline.trust_for_push([], IDENTITY, env, home, skip=False).keys == {
        "acme-app.rsa.pub": b"from-env"
    }
    given = pipeline.trust_for_push(
        [str(deployment_files.public_key)], IDENTITY, env, home, skip=False
    )
    assert given.keys == {"acme-app.rsa.pub": pem}
    assert given.required


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--key: .*nope\.pub: cannot read"):
        pipeline.trust_files([str(tmp_path / "nope.pub")])


def test_an_archive_is_made_when_none_is_given(deployment_files: Built, tmp_path: Path) -> None:
    logged: list[str] = []
    with pipeline.archive_for(deployment_files.packages, None, logged.append) as made:
        assert made.read_bytes() == deployment_files.archive.read_bytes()  # deterministic
    assert not made.exists()  # a temporary, gone afterwards
    assert logged
    assert "no archive given" in logged[0]
    with pipeline.archive_for(deployment_files.packages, deployment_files.archive) as given:
        assert given == deployment_files.archive


def test_a_made_archive_is_kept_and_used_again_while_the_tree_is_unchanged(
    deployment_files: Built, tmp_path: Path
) -> None:
    from pakman.hashcache import HashCache

    cache = HashCache(tmp_path / "cache" / "hashes.json")
    logged: list[str] = []
    tree = deployment_files.packages
    with pipeline.archive_for(tree, None, logged.append, cache) as first:
        assert first.read_bytes() == deployment_files.archive.read_bytes()
        made = first.stat()
    assert first.parent.parent == tmp_path / "cache" / "made"
    assert first.name == "packages.zip"  # what its object key ends with
    with pipeline.archive_for(tree, None, logged.append, cache) as again:
        assert again == first
        assert again.stat().st_mtime_ns == made.st_mtime_ns  # not written again
    assert "made packages.zip" in logged[0]
    assert "made from this unchanged tree before" in logged[1]
    # A changed tree gets a new zip; the old one stays until it is a minute old.
    (tree / "acme" / "x86_64" / "app0-1.0.0-r0.apk").touch()
    with pipeline.archive_for(tree, None, logged.append, cache) as changed:
        assert changed != first
    assert first.exists()
    old = time.time() - 120
    os.utime(first, (old, old))
    os.utime(changed, (old, old))
    (tree / "acme" / "x86_64" / "app1-1.0.0-r0.apk").touch()
    with first.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # another run is shipping it
        with pipeline.archive_for(tree, None, logged.append, cache) as newest:
            assert newest.read_bytes() == deployment_files.archive.read_bytes()
    assert first.exists()  # held: kept
    assert not changed.exists()  # old and free: removed
    assert sorted((tmp_path / "cache" / "made").glob("*/*")) == sorted([first, newest])


def test_a_kept_archive_that_was_changed_is_made_again(
    deployment_files: Built, tmp_path: Path
) -> None:
    from pakman.hashcache import HashCache

    cache = HashCache(tmp_path / "cache" / "hashes.json")
    tree = deployment_files.packages
    with pipeline.archive_for(tree, None, cache=cache) as first:
        pass
    first.write_bytes(b"not the zip any more")
    with pipeline.archive_for(tree, None, cache=cache) as again:
        assert again.read_bytes() == deployment_files.archive.read_bytes()


def test_an_unwritable_cache_gets_a_temporary_archive(
    deployment_files: Built, tmp_path: Path
) -> None:
    from pakman.hashcache import HashCache

    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would be")
    cache = HashCache(blocked / "hashes.json")
    with pipeline.archive_for(deployment_files.packages, None, cache=cache) as made:
        assert made.read_bytes() == deployment_files.archive.read_bytes()
    assert not made.exists()


def test_v8_archive_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    assert pipeline.v8_archive("packages.zip", home) is None
    (home / "packages.zip").write_bytes(b"zip")
    assert pipeline.v8_archive("packages.zip", home) == home / "packages.zip"
    (tmp_path / "packages.zip").write_bytes(b"zip")
    assert pipeline.v8_archive("packages.zip", home) == Path("packages.zip")


def test_merge_verifies_the_merged_tree(deployment_files: Built, tmp_path: Path) -> None:
    trust = pipeline.trust_files([str(deployment_files.public_key)])
    merged, digest = pipeline.merge([deployment_files.packages], tmp_path / "out.zip", trust)
    assert merged.architectures == ["aarch64", "x86_64"]
    assert (tmp_path / "out.zip").read_bytes() == deployment_files.archive.read_bytes()
    assert len(digest) == 64
    with pytest.raises(ConfigError, match="a trusted public key is required"):
        pipeline.merge([deployment_files.packages], tmp_path / "x.zip", pipeline.Trust())
    assert not (tmp_path / "x.zip").exists()
    pipeline.merge([deployment_files.packages], tmp_path / "y.zip", pipeline.Trust(skip=True))
    assert merge.consumer_view(tmp_path / "y.zip") == merge.consumer_view(deployment_files.archive)


def test_a_retried_publish_re_reads_nothing_it_proved(
    deployment_files: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification and the archive check are remembered by file identity and key."""
    import time

    from pakman import publish as publish_module
    from pakman import verify as verify_module

    time.sleep(0.15)  # the tree must have changed clearly before it is proved
    store = pipeline.StoreOptions.resolve({}, store=f"file://{tmp_path / 's'}", create_bucket=True)
    trust = pipeline.trust_files([str(deployment_files.public_key)])
    target = pipeline.deployment("acme/app", "a" * 40)
    first = pipeline.publish(deployment_files.packages, None, target, trust, store)
    assert len(first.uploaded) == deployment_files.files + 2

    def must_not_run(*_: object) -> None:
        raise AssertionError("read again")

    monkeypatch.setattr(verify_module, "verify_tree", must_not_run)
    monkeypatch.setattr(publish_module, "check_archive", must_not_run)
    again = pipeline.publish(deployment_files.packages, None, target, trust, store)
    assert again.uploaded == []
    # Another key is another fact: proved again, not taken from the cache.
    other = pipeline.trust_pem(keys.generate(2048).public_pem, IDENTITY)
    with pytest.raises(AssertionError, match="read again"):
        pipeline.publish(deployment_files.packages, None, target, other, store)
    monkeypatch.undo()
    # A package changed since: proved again, and refused.
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    data = bytearray(package.read_bytes())
    data[-40] ^= 0xFF
    package.write_bytes(bytes(data))
    with pytest.raises(VerificationError):
        pipeline.publish(deployment_files.packages, None, target, trust, store)
