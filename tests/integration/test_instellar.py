"""pakman push against a local fake of the OpsMaru/Instellar API and moto's real S3."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from devkit.s3 import S3Server
from tests.support.cli import run_pakman
from tests.support.deployment import Built
from tests.support.instellar import AUTH, PACKAGE_TOKEN, SHA, Instellar
from tests.support.paths import V8_CONFIGS


def v8_home(tmp_path: Path, built: Built, fixture: str = "rails") -> dict[str, str]:
    """Lay files out where v8's push looked: $HOME/packages, $HOME/packages.zip."""
    home = tmp_path / "home"
    shutil.copytree(built.packages, home / "packages")
    shutil.copy(built.archive, home / "packages.zip")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(V8_CONFIGS / f"{fixture}.yml", workspace / "instellar.yml")
    return {
        "HOME": str(home),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": "upmaru/locomo",
        "GITHUB_SHA": SHA,
        "GITHUB_REF": "refs/heads/develop",
        "WORKFLOW_SHA": "",
        "INSTELLAR_AUTH_TOKEN": AUTH,
        "INSTELLAR_PACKAGE_TOKEN": PACKAGE_TOKEN,
    }


def push(api: Instellar, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    result = run_pakman("push", *extra, env={**env, "INSTELLAR_ENDPOINT": api.endpoint})
    for secret in (AUTH, PACKAGE_TOKEN, api.session_token):
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def test_new_deployment(
    api: Instellar, deployment_files: Built, tmp_path: Path, s3_server: S3Server
) -> None:
    env = v8_home(tmp_path, deployment_files)
    code, out, err = push(api, env, "--key", str(deployment_files.public_key))
    assert code == 0, err
    archive_sha = hashlib.sha256(deployment_files.archive.read_bytes()).hexdigest()
    archive_path = f"archives/{archive_sha}/packages.zip"
    assert api.paths() == [
        "POST /publish/automation/callback",
        f"GET /publish/deployments/{SHA}",
        "GET /publish/storage",
        "POST /publish/deployments",
        "POST /publish/deployments/1/configurations",
    ]
    deployment = api.calls[3][2]["deployment"]
    assert deployment == {
        "ref": "refs/heads/develop",
        "hash": SHA,
        "archive_path": archive_path,
        "stack": "alpine/3.17",
    }
    payload = api.calls[4][2]["configuration"]["payload"]
    assert set(payload) == {"kits", "sizes", "plans", "page"}
    assert payload["page"]["title"] == "SomeApp"
    assert "deployment created: " + archive_path in out
    assert "configuration created" in out
    client = s3_server.client()
    bucket = api.storage["bucket"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert archive_path in keys
    assert f"deployments/upmaru/locomo/{SHA}/x86_64/APKINDEX.tar.gz" in keys
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key=f"deployments/upmaru/locomo/{SHA}/manifest.json")[
            "Body"
        ].read()
    )
    assert manifest["key_fingerprint"].startswith("sha256:")


def test_existing_deployment_is_re_registered_without_uploading(
    api: Instellar, deployment_files: Built, tmp_path: Path, s3_server: S3Server
) -> None:
    api.deployments[SHA] = {"id": 7, "hash": SHA, "archive_path": "archives/old/packages.zip"}
    code, out, err = push(api, v8_home(tmp_path, deployment_files))
    assert code == 0, err
    assert "GET /publish/storage" not in api.paths()
    assert api.calls[2][2]["deployment"]["archive_path"] == "archives/old/packages.zip"
    assert "deployment already exists: archives/old/packages.zip" in out
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=api.storage["bucket"])


def test_retry_after_failed_registration_uploads_nothing(
    api: Instellar, deployment_files: Built, tmp_path: Path
) -> None:
    env = v8_home(tmp_path, deployment_files)
    api.fail[("POST", "/publish/deployments")] = (500, {"errors": {"detail": "boom"}})
    code, _, err = push(api, env)
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        'error: instellar POST /publish/deployments: unexpected status 500: {"detail": "boom"}'
    )
    api.fail.clear()
    code, out, err = push(api, env, "--json")
    assert code == 0, err
    outcome = json.loads(out)
    assert outcome["upload"]["uploaded"] == 0  # the first attempt's upload is re-used
    assert outcome["deployment"] == "created"
    assert outcome["archive_path"].startswith("archives/")


def test_configuration_already_exists_and_422(
    api: Instellar, deployment_files: Built, tmp_path: Path
) -> None:
    env = v8_home(tmp_path, deployment_files)
    api.configurations["1"] = {"kits": []}
    code, out, _ = push(api, env)
    assert code == 0
    assert "configuration already exists" in out
    api.configurations.clear()
    api.fail[("POST", "/publish/deployments/1/configurations")] = (
        422,
        {"errors": {"kits": ["is invalid"]}},
    )
    code, _, err = push(api, env)
    assert code == 3
    assert 'configurations: unexpected status 422: {"kits": ["is invalid"]}' in err


def test_no_kits_means_no_configuration(
    api: Instellar, deployment_files: Built, tmp_path: Path
) -> None:
    code, out, err = push(api, v8_home(tmp_path, deployment_files, fixture="elixir"))
    assert code == 0, err
    assert not any("configurations" in p for p in api.paths())
    assert "configuration" not in out


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            (("POST", "/publish/automation/callback"), (404, None)),
            "error: instellar POST /publish/automation/callback:"
            " INSTELLAR_AUTH_TOKEN was not accepted (404)",
        ),
        (
            (("GET", f"/publish/deployments/{SHA}"), (500, None)),
            f"error: instellar GET /publish/deployments/{SHA}: unexpected status 500",
        ),
        (
            (("GET", "/publish/storage"), (403, {"errors": {"detail": "Forbidden"}})),
            'error: instellar GET /publish/storage: unexpected status 403: {"detail": "Forbidden"}',
        ),
    ],
)
def test_api_errors(
    api: Instellar,
    deployment_files: Built,
    tmp_path: Path,
    failure: tuple[tuple[str, str], tuple[int, object]],
    expected: str,
) -> None:
    api.fail[failure[0]] = failure[1]
    code, _, err = push(api, v8_home(tmp_path, deployment_files))
    assert code == 3
    assert err.strip().splitlines()[-1] == expected


def test_wrong_auth_token(api: Instellar, deployment_files: Built, tmp_path: Path) -> None:
    env = {**v8_home(tmp_path, deployment_files), "INSTELLAR_AUTH_TOKEN": "wrong-token-SECRET-3"}
    result = run_pakman("push", "--no-verify", env={**env, "INSTELLAR_ENDPOINT": api.endpoint})
    assert result.returncode == 3
    assert "INSTELLAR_AUTH_TOKEN was not accepted (404)" in result.stderr
    assert "wrong-token-SECRET-3" not in result.stderr


def test_unreachable_api(deployment_files: Built, tmp_path: Path) -> None:
    from devkit.ports import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**v8_home(tmp_path, deployment_files), "INSTELLAR_ENDPOINT": endpoint}
    result = run_pakman("push", "--no-verify", env=env)
    assert result.returncode == 3
    assert f"cannot reach {endpoint}" in result.stderr


def test_push_finds_the_public_key_as_a_v8_job_has_it(
    api: Instellar, tmp_path: Path, s3_server: S3Server
) -> None:
    """No --key: ABUILD_PUBLIC_KEY, else ~/.abuild/<org>-<slug>.rsa.pub; else a warning."""
    from devkit.apkfactory import SigningKey, make_package, write_repo
    from pakman import keys

    pair = keys.generate(2048)
    key = SigningKey(pair, "upmaru-locomo.rsa.pub")
    built_dir = tmp_path / "built"
    write_repo(built_dir / "packages" / "upmaru", key, [make_package(key, "locomo")])
    from pakman import merge

    merge.write_zip(merge.collect([built_dir / "packages"]), built_dir / "packages.zip")
    built = Built(built_dir / "packages", built_dir / "packages.zip", built_dir / "unused", 2)
    env = v8_home(tmp_path, built)
    result = run_pakman(
        "push",
        env={
            **env,
            "INSTELLAR_ENDPOINT": api.endpoint,
            "ABUILD_PUBLIC_KEY": pair.public_pem.decode(),
        },
    )
    assert result.returncode == 0, result.stderr
    manifest_key = f"deployments/upmaru/locomo/{SHA}/manifest.json"
    body = s3_server.client().get_object(Bucket=api.storage["bucket"], Key=manifest_key)["Body"]
    assert json.loads(body.read())["key_fingerprint"] == "sha256:" + keys.fingerprint(
        pair.public_pem
    )

    # A package signed by another key is refused before anything is uploaded.
    intruder = SigningKey(keys.generate(2048), "upmaru-locomo.rsa.pub")
    (Path(env["HOME"]) / "packages" / "upmaru" / "x86_64" / "locomo-1.0.0-r0.apk").write_bytes(
        make_package(intruder, "locomo").data
    )
    installed = Path(env["HOME"]) / ".abuild" / "upmaru-locomo.rsa.pub"
    installed.parent.mkdir(parents=True)
    installed.write_bytes(pair.public_pem)
    refused = run_pakman("push", env={**env, "INSTELLAR_ENDPOINT": api.endpoint})
    assert refused.returncode == 1
    assert "bad signature" in refused.stderr

    installed.unlink()
    warned = run_pakman("push", env={**env, "INSTELLAR_ENDPOINT": api.endpoint})
    assert "packages not verified" in warned.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"bucket": "Not_A_Bucket"}, "not a valid S3 bucket name"),
        ({"scheme": "ftp"}, "must be an http(s) URL"),
    ],
    ids=["bucket", "endpoint"],
)
def test_storage_from_the_api_is_checked_like_the_users_own(
    api: Instellar,
    deployment_files: Built,
    tmp_path: Path,
    given: dict[str, str],
    expected: str,
) -> None:
    """push opens Instellar's storage through the same checks as --bucket and --endpoint:
    an unusable answer is one error line, before any upload, naming where it came from."""
    api.storage.update(given)
    code, _, err = push(api, v8_home(tmp_path, deployment_files))
    assert code == 3, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: instellar GET /publish/storage: "), err
    assert expected in last, err
    assert "POST /publish/deployments" not in api.paths()
