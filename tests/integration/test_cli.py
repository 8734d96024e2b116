from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from devkit.s3 import S3Server
from pakman import keys
from tests.support import rig
from tests.support.cli import one_line_error, run_bootstrap, run_pakman
from tests.support.deployment import Built, publish_args
from tests.support.instellar import SHA
from tests.support.paths import V8_CONFIGS
from tests.support.workspace import git_workspace


def _workspace(tmp_path: Path, fixture: str = "rails") -> Path:
    return git_workspace(tmp_path / "ws", fixture, tag="v3.1.4")


def test_bootstrap_as_a_v8_drop_in(tmp_path: Path) -> None:
    """An unchanged v8 workflow: everything comes from the GITHUB_* and ABUILD_* variables."""
    workspace = _workspace(tmp_path)
    pair = keys.generate(2048)
    home = tmp_path / "home"
    result = run_pakman(
        "bootstrap",
        "--apk-keys-dir",
        str(tmp_path / "apk-keys"),
        env={
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_REPOSITORY": "upmaru/locomo",
            "GITHUB_RUN_NUMBER": "42",
            "HOME": str(home),
            "ABUILD_PRIVATE_KEY": pair.private_pem.decode(),
            "ABUILD_PUBLIC_KEY": pair.public_pem.decode(),
        },
    )
    assert result.returncode == 0, result.stderr
    apkbuild = (workspace / ".apk/upmaru/locomo/APKBUILD").read_text()
    assert 'pkgver="3.1.4"' in apkbuild
    assert 'pkgrel="42"' in apkbuild
    head = subprocess.run(
        ["git", "-C", str(workspace), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # The commit abuild records, clean although bootstrap just wrote untracked files.
    assert f': "${{ABUILD_LAST_COMMIT:={head}}}"' in apkbuild
    assert ': "${SOURCE_DATE_EPOCH:=1704164645}"' in apkbuild  # the commit's time
    assert (home / ".abuild/upmaru-locomo.rsa").read_bytes() == pair.private_pem
    assert (tmp_path / "apk-keys/upmaru-locomo.rsa.pub").read_bytes() == pair.public_pem
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_bootstrap_options_override_environment(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, "elixir")
    out = workspace / "pkgbuild"
    result = run_pakman(
        "bootstrap",
        "--workspace",
        str(workspace),
        "--repository",
        "upmaru/rdio",
        "--version",
        "9.9.9",
        "--build",
        "3",
        "--output",
        str(out),
        env={"GITHUB_REPOSITORY": "someone/else", "GITHUB_RUN_NUMBER": "100"},
    )
    assert result.returncode == 0, result.stderr
    assert 'pkgrel="3"' in (out / "APKBUILD").read_text()
    assert 'pkgver="9.9.9"' in (out / "APKBUILD").read_text()
    assert "signing key set-up skipped" in result.stderr


def test_bootstrap_with_a_bad_key_writes_nothing(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    bad = "-----BEGIN PRIVATE KEY-----\nSECRETBITS\n-----END"
    result = run_bootstrap(workspace, tmp_path / "home", private_pem=bad)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: ABUILD_PRIVATE_KEY: not an unencrypted PEM private key"
    assert not (workspace / ".apk").exists()
    assert not (tmp_path / "home").exists()


def test_bootstrap_without_repository_is_a_clear_error(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    result = run_pakman("bootstrap", "--workspace", str(workspace))
    assert result.returncode == 2
    assert "--repository: required" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_build_number(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    result = run_pakman(
        "bootstrap",
        "--workspace",
        str(workspace),
        "--repository",
        "upmaru/locomo",
        "--build",
        "seven",
    )
    assert result.returncode == 2
    assert "--build: must be a whole number (got 'seven')" in result.stderr


def test_help_has_examples() -> None:
    for command in ("check", "bootstrap", "keygen"):
        result = run_pakman(command, "--help")
        assert result.returncode == 0
        assert "examples:" in result.stdout


def test_check_and_bootstrap_do_not_import_boto3_or_cryptography() -> None:
    code = (
        "import sys; from pakman import cli\n"
        "try:\n    cli.main(['check', '--config', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'cryptography') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(V8_CONFIGS / "rails.yml")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_command_exits_with_its_status_and_its_output_complete(tmp_path: Path) -> None:
    """`pakman` skips the interpreter's teardown, but only after flushing what it printed."""
    config = str(V8_CONFIGS / "rails.yml")
    ok = run_pakman("check", "--config", config)
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{config}: ok (default package, 2 arch)"
    bad = run_pakman("check", "--config", str(tmp_path / "missing.yml"))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")


@pytest.mark.parametrize("buffered", [True, False])
def test_a_closed_output_pipe_leaves_the_commands_own_exit_code(buffered: bool) -> None:
    """`pakman check | true`: output that cannot be written is dropped, and the exit code
    is the check's (it was 120 buffered, and 2 with 'error: Broken pipe' unbuffered)."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "-m", "pakman.cli", "check", "--config", str(V8_CONFIGS / "rails.yml")],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        env=env if buffered else {**env, "PYTHONUNBUFFERED": "1"},
    )
    os.close(write)
    assert (result.returncode, result.stderr) == (0, "")


def _snapshot(startdir: Path) -> subprocess.CompletedProcess[str]:
    """abuild's snapshot() of the rendered APKBUILD, with GNU tar (abuild itself stubbed)."""
    tar = rig.need_tool("tar")
    rig.need(
        "GNU tar" in subprocess.run([tar, "--version"], capture_output=True, text=True).stdout,
        "snapshot needs GNU tar",
    )
    return subprocess.run(
        ["sh", "-c", "startdir=$PWD; abuild() { :; }; . ./APKBUILD; snapshot"],
        cwd=startdir,
        capture_output=True,
        text=True,
        check=False,
    )


def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted(m.name.removeprefix("./") for m in tar.getmembers() if m.name != ".")


def test_bootstrap_output_inside_the_workspace_snapshots_the_workspace(tmp_path: Path) -> None:
    """--output used to keep root=../../.., so the snapshot packed the folder above the
    workspace: there, the signing key in ~/.abuild and a whole .git."""
    home = tmp_path / "home"
    workspace = _workspace(home, "elixir")
    (workspace / "lib").mkdir()
    (workspace / "lib" / "app.ex").write_text("defmodule App do end\n")
    pair = keys.generate(2048)
    result = run_pakman(
        "bootstrap", "--workspace", str(workspace), "--repository", "upmaru/rdio",
        "--home", str(home), "--apk-keys-dir", str(tmp_path / "trusted"),
        "--output", str(workspace / "pkgbuild"),
        env={"ABUILD_PRIVATE_KEY": pair.private_pem.decode()},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (home / ".abuild" / "upmaru-rdio.rsa").exists()
    apkbuild = (workspace / "pkgbuild" / "APKBUILD").read_text()
    assert "\nroot=..\n" in apkbuild
    snapshot = _snapshot(workspace / "pkgbuild")
    assert snapshot.returncode == 0, snapshot.stderr
    members = _members(workspace / "pkgbuild" / "rdio-3.1.4.tar")
    assert members == ["instellar.yml", "lib", "lib/app.ex"]  # not pkgbuild/, not .git


def test_bootstrap_refuses_an_output_outside_the_workspace(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "home", "elixir")
    for output in (tmp_path / "elsewhere", workspace, workspace / ".git" / "x"):
        result = run_pakman(
            "bootstrap", "--workspace", str(workspace), "--repository", "upmaru/rdio",
            "--output", str(output),
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: --output: must "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_the_snapshot_never_ships_a_signing_key_or_git(tmp_path: Path) -> None:
    """Whatever lies in the workspace: abuild's .abuild/, *.rsa keys and .git stay out."""
    workspace = _workspace(tmp_path, "elixir")
    for planted in (".abuild/me.rsa", "config/deploy.rsa", "vendor/dep/.git/HEAD", "keep.rsa.pub"):
        (workspace / planted).parent.mkdir(parents=True, exist_ok=True)
        (workspace / planted).write_text("x\n")
    result = run_pakman("bootstrap", "--workspace", str(workspace), "--repository", "upmaru/rdio")
    assert result.returncode == 0, result.stderr
    startdir = workspace / ".apk" / "upmaru" / "rdio"
    assert _snapshot(startdir).returncode == 0
    members = _members(startdir / "rdio-3.1.4.tar")
    assert {"keep.rsa.pub", "config"} <= set(members)
    assert [m for m in members if ".abuild" in m or m.endswith(".rsa") or ".git" in m] == []
    # And the check after tar refuses a snapshot that holds one anyway.
    apkbuild = startdir / "APKBUILD"
    apkbuild.write_text(apkbuild.read_text().replace("--exclude='*.rsa' ", ""))
    refused = _snapshot(startdir)
    assert refused.returncode != 0
    assert "config/deploy.rsa" in refused.stdout
    assert "snapshot: refused" in refused.stderr


def test_a_relative_home_gives_abuild_an_absolute_key_path(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, "elixir")
    pair = keys.generate(2048)
    result = run_pakman(
        "bootstrap", "--workspace", str(workspace), "--repository", "upmaru/rdio",
        "--home", "homes/x", "--apk-keys-dir", "trusted",
        env={"ABUILD_PRIVATE_KEY": pair.private_pem.decode()},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "homes" / "x" / ".abuild" / "abuild.conf").read_text()
    key = tmp_path / "homes" / "x" / ".abuild" / "upmaru-rdio.rsa"
    assert conf == f'PACKAGER_PRIVKEY="{key}"\n'
    assert key.exists()
    assert (tmp_path / "trusted" / "upmaru-rdio.rsa.pub").exists()


def test_a_static_site_without_nginx_conf_is_refused_at_bootstrap(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "instellar.yml").write_text(
        "type: static\ndependencies: {}\nbuild: {command: npm run build, destinations: [dist]}\n"
    )
    args = ("bootstrap", "--workspace", str(workspace), "--repository", "acme/site")
    result = run_pakman(*args)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: nginx.conf: not found in the application's root: a type: static package"
        " installs it as /etc/site/default.conf"
    )
    assert not (workspace / ".apk").exists()
    (workspace / "nginx.conf").write_text("server {}\n")
    assert run_pakman(*args).returncode == 0


def test_keygen_keeps_an_existing_key_unless_forced(tmp_path: Path) -> None:
    """The key that signed every package on hosts is never replaced by accident."""
    private = tmp_path / "acme-app.rsa"
    private.write_bytes(b"the old key")
    args = ("keygen", "--repository", "acme/app", "--output", str(tmp_path), "--bits", "1024")
    result = run_pakman(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {private}: a key is already there"), result.stderr
    assert private.read_bytes() == b"the old key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme-app.rsa"]
    forced = run_pakman(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "acme-app.rsa.pub").is_file()


def _one_object(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """--json's promise: stdout is exactly one JSON object, whatever the exit."""
    data = json.loads(result.stdout)
    assert isinstance(data, dict), result.stdout
    assert data["exit_code"] == result.returncode
    assert data["ok"] is (result.returncode == 0)
    return data


def test_check_and_merge_print_one_object(deployment_files: Built, tmp_path: Path) -> None:
    checked = _one_object(run_pakman("check", "--config", str(V8_CONFIGS / "rails.yml"), "--json"))
    assert checked["architectures"] == ["x86_64", "aarch64"]
    assert checked["errors"] == []
    output = tmp_path / "m.zip"
    merged = _one_object(
        run_pakman(
            "merge",
            str(deployment_files.packages),
            "--output",
            str(output),
            "--public-key",
            str(deployment_files.public_key),
            "--json",
        )
    )
    assert merged["archive"] == str(output)
    assert merged["files"] == deployment_files.files
    assert merged["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    bad = _one_object(run_pakman("check", "--config", str(tmp_path / "none.yml"), "--json"))
    assert bad["errors"] == [f"{tmp_path / 'none.yml'}: no such file"]


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "tree", "--concurrency", "many", "--json"],
        ["repo", "tree", "--json"],
        ["--json", "verify"],
        ["nonsense", "--json"],
    ],
)
def test_an_argument_error_is_one_line_and_with_json_one_object(args: list[str]) -> None:
    result = run_pakman(*args)
    assert result.returncode == 2
    data = _one_object(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: pakman"), line
    assert data["errors"] == [line.removeprefix("error: ")]
    assert "usage:" not in result.stderr


def test_config_is_the_instellar_yml_from_the_workspace_in_every_command(
    tmp_path: Path, key_files: tuple[Path, Path]
) -> None:
    """--config names instellar.yml, a relative path taken from --workspace, in check,
    bootstrap, repo and push alike (repo read it from the current folder before)."""
    workspace = tmp_path / "app"
    (workspace / "deploy").mkdir(parents=True)
    (workspace / "deploy/instellar.yml").write_text(
        "stack: alpine/3.20\ntype: static\ndependencies: {}\nbuild: {command: x}\n"
    )
    checked = run_pakman(
        "check", "--workspace", str(workspace), "--config", "deploy/instellar.yml", cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(str(workspace / "deploy/instellar.yml"))
    public, private = key_files
    store = tmp_path / "store"
    repo = run_pakman(
        "repo", str(tmp_path / "empty"), "--public-key", str(public), "--private-key",
        str(private), "--store", f"file://{store}", "--create-bucket", "--source",
        str(workspace), "--config", "deploy/missing.yml", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert repo.returncode == 2
    assert _one_object(repo)["errors"] == [f"{workspace / 'deploy/missing.yml'}: no such file"]
    pushed = run_pakman(
        "deploy", "--source", str(workspace), "--config", "deploy/missing.yml", cwd=tmp_path
    )
    assert pushed.returncode == 2
    assert f"{workspace / 'deploy/missing.yml'}: no such file" in pushed.stderr


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    pair = keys.generate(1024)
    public, private = tmp_path / "acme-app.rsa.pub", tmp_path / "acme-app.rsa"
    public.write_bytes(pair.public_pem)
    private.write_bytes(pair.private_pem)
    return public, private


# --- options before heavy work: a tree that would fail verification must not be read ---


def _broken(built: Built) -> Built:
    """The tree with one package cut short: verifying it fails (exit 1)."""
    package = next((built.packages / "acme/x86_64").glob("*.apk"))
    package.write_bytes(package.read_bytes()[:100])
    return built


NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance role to wait for
}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret"}


def _publish(built: Built, *extra: str) -> list[str]:
    return [
        "publish", str(built.packages), "--repository", "acme/app", "--sha", "a" * 40,
        "--key", str(built.public_key), *extra,
    ]  # fmt: skip


def test_the_tree_would_fail_verification(deployment_files: Built, tmp_path: Path) -> None:
    """The control: with good options, the broken tree is refused by verification."""
    result = run_pakman(*_publish(_broken(deployment_files), "--store", f"file://{tmp_path}/s"))
    assert result.returncode == 1, result.stderr
    assert "publish refused: verification failed" in result.stderr


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (["--bucket", "Bad_Bucket"], CREDENTIALS, "error: --bucket: not a valid S3 bucket name"),
        (["--bucket", "releases", "--endpoint", "ftp://x"], CREDENTIALS, "error: --endpoint:"),
        (
            ["--bucket", "releases", "--endpoint", "http://127.0.0.1:9"],
            NO_CREDENTIALS,
            "error: storage s3://releases at http://127.0.0.1:9: no credentials",
        ),
        (["--store", "file:///tmp/x", "--archive", "/nonexistent.zip"], {}, "error: --archive:"),
    ],
    ids=["bucket", "endpoint", "credentials", "archive"],
)
def test_publish_checks_options_before_reading_the_tree(
    deployment_files: Built, tmp_path: Path, extra: list[str], env: dict[str, str], expected: str
) -> None:
    home = {"HOME": str(tmp_path), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    result = run_pakman(*_publish(_broken(deployment_files), *extra), env={**env, **home})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert "verification" not in result.stderr


def test_merge_repo_and_push_check_options_first(
    deployment_files: Built, tmp_path: Path, key_files: tuple[Path, Path]
) -> None:
    built = _broken(deployment_files)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    merged = run_pakman(
        "merge", str(built.packages), "--key", str(built.public_key),
        "--output", str(a_file / "out.zip"),
    )  # fmt: skip
    assert merged.returncode == 2, merged.stderr
    assert merged.stderr == f"error: --output: {a_file}: not a folder\n"
    public, private = key_files
    repo = run_pakman(
        "repo", str(built.packages), "--key", str(public), "--private-key", str(private),
        "--bucket", "Bad_Bucket", env=CREDENTIALS,
    )  # fmt: skip
    assert repo.returncode == 2, repo.stderr
    assert repo.stderr.startswith("error: --bucket: not a valid S3 bucket name"), repo.stderr
    workspace = git_workspace(tmp_path / "ws", "rails")
    pushed = run_pakman(
        "push", "--packages-dir", str(built.packages), "--key", str(built.public_key),
        "--repository", "acme/app", "--sha", "a" * 40,
        env={"GITHUB_WORKSPACE": str(workspace), "INSTELLAR_AUTH_TOKEN": "t",
             "INSTELLAR_ENDPOINT": "opsmaru.com"},
    )  # fmt: skip
    assert pushed.returncode == 2, pushed.stderr
    assert pushed.stderr.startswith("error: INSTELLAR_ENDPOINT: must be an http(s) URL")


def test_keygen_and_bootstrap_print_one_object(tmp_path: Path) -> None:
    made = _one_object(
        run_pakman(
            "keygen",
            "--repository",
            "acme/app",
            "--output",
            str(tmp_path),
            "--bits",
            "1024",
            "--json",
        )
    )
    public = tmp_path / "acme-app.rsa.pub"
    assert made["public_key"] == str(public)
    assert made["fingerprint"] == f"sha256:{keys.fingerprint(public.read_bytes())}"
    workspace = _workspace(tmp_path)
    rendered = _one_object(
        run_pakman(
            "bootstrap",
            "--workspace",
            str(workspace),
            "--repository",
            "upmaru/locomo",
            "--build",
            "7",
            "--json",
        )
    )
    assert rendered["package"] == "locomo"
    assert rendered["version"] == "3.1.4-r7"
    assert rendered["signing_key"] is None
    assert rendered["output"] == str(workspace / ".apk/upmaru/locomo")


# --- hostile input: each one clean error, nothing lost or leaked --------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--repository", "acme/..", "repository: must be owner/name"),
        ("--repository", "acme/app\n", "repository: must be owner/name"),
        ("--sha", "zz", "--sha: must be a commit sha of 7 to 64 hex digits"),
        ("--sha", "../../etc", "--sha: must be a commit sha"),
        ("--build", "²", "--build: must be a whole number"),
        ("--bucket", "Bad_Bucket", "--bucket: not a valid S3 bucket name"),
        ("--concurrency", "0", "--concurrency: must be 1 to 64"),
        ("--timeout", "0", "--timeout: must be 1 second to 7 days"),
    ],
)
def test_hostile_options_are_one_line_errors(
    option: str, value: str, message: str, deployment_files: Built
) -> None:
    args = {"--repository": "acme/app", "--sha": SHA, "--bucket": "releases"}
    args[option] = value
    flat = [item for pair in args.items() for item in pair]
    if option not in args or option in ("--build", "--concurrency", "--timeout"):
        flat += [option, value]
    result = run_pakman(
        "publish", str(deployment_files.packages), "--no-verify", *flat, "--dry-run"
    )
    one_line_error(result, 2, message)


def test_local_file_problems_are_one_line_errors(tmp_path: Path) -> None:
    workspace = git_workspace(tmp_path / "ws")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    common = ["--workspace", str(workspace), "--repository", "upmaru/locomo"]
    cases = {
        "output is a file": ["bootstrap", *common, "--output", str(a_file / "sub")],
        "name too long": ["bootstrap", *common, "--output", str(tmp_path / ("n" * 300))],
        "/dev/zero as config": ["check", "--config", "/dev/zero"],
        "a folder as config": ["check", "--config", str(tmp_path)],
        "keygen into a file": ["keygen", "--repository", "acme/app", "--output", str(a_file)],
    }
    for case, args in cases.items():
        result = run_pakman(*args, timeout=30)
        one_line_error(result, 2)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)


def test_bootstrap_writes_nothing_unless_it_can_write_everything(tmp_path: Path) -> None:
    workspace = git_workspace(tmp_path / "ws")
    blocked = tmp_path / "apk-keys"
    blocked.write_text("a file where the folder should be")
    pair = keys.generate(2048)
    result = run_bootstrap(workspace, tmp_path / "home", blocked, pair.private_pem.decode())
    one_line_error(result, 2, str(blocked))
    assert not (workspace / ".apk").exists() or not any((workspace / ".apk").rglob("APKBUILD"))
    assert not (tmp_path / "home" / ".abuild" / "upmaru-locomo.rsa").exists()


def test_help_documents_the_timeout() -> None:
    for command in ("publish", "push"):
        out = run_pakman(command, "--help").stdout
        assert "--timeout SECONDS" in out
        assert "a re-run resumes" in textwrap.dedent(out).replace("\n", " ").replace("  ", " ")


def test_a_file_name_that_is_not_utf8_is_bad_input_shown_safely(
    deployment_files: Built, tmp_path: Path
) -> None:
    folder = os.fsencode(deployment_files.packages / "acme" / "x86_64")
    with open(folder + b"/x\xff.apk", "wb") as handle:
        handle.write(b"x")
    key = str(deployment_files.public_key)
    for args in (
        ["verify", str(deployment_files.packages), "--key", key],
        ["merge", str(deployment_files.packages), "--output", str(tmp_path / "m.zip")],
        publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
    ):
        result = run_pakman(*args)
        one_line_error(result, 2, "acme/x86_64/x\\xff.apk: the name is not valid UTF-8")


def _cli(args: list[str], stdout: int, **env: str) -> subprocess.CompletedProcess[bytes]:
    """The `pakman` command with real file descriptors: /dev/full, pipes."""
    return subprocess.run(
        [sys.executable, "-m", "pakman.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        check=False,
        timeout=300,
        close_fds=True,
    )


def _closed_stdout(args: list[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    """As a shell runs `pakman ... >&-`: no file descriptor 1 at all."""
    script = 'exec "$@" >&-'
    return subprocess.run(
        ["sh", "-c", script, "sh", sys.executable, "-m", "pakman.cli", *args],
        capture_output=False,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        check=False,
        timeout=300,
    )


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_verify_keeps_its_own_exit_code_whatever_becomes_of_its_output(
    deployment_files: Built, unbuffered: str
) -> None:
    args = ["verify", str(deployment_files.packages), "--key", str(deployment_files.public_key)]
    env = {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {}
    with open("/dev/full", "wb") as full:
        outcomes = [_closed_stdout(args, **env), _cli(args, full.fileno(), **env)]
        for done in outcomes:
            assert done.returncode == 0, done.stderr
            assert b"Traceback" not in done.stderr
        # A failing tree keeps its exit 1 on a full disk too.
        package = next((deployment_files.packages / "acme" / "x86_64").glob("*.apk"))
        package.write_bytes(package.read_bytes()[:-10] + b"0123456789")
        failed = _cli(args, full.fileno(), **env)
    assert failed.returncode == 1, failed.stderr
    assert b"Traceback" not in failed.stderr


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_publish_finishes_when_its_reader_goes_away(
    s3_server: S3Server, bucket: str, tmp_path: Path, unbuffered: str
) -> None:
    """`pakman publish ... 2>&1 | head -3` used to stop the upload after 13 of 44 objects."""
    from tests.support.deployment import build_deployment

    built = build_deployment(tmp_path, count=20)
    env = {**os.environ, **s3_server.env(), "PYTHONUNBUFFERED": unbuffered}
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman.cli", *publish_args(built, "--bucket", bucket)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    head = [process.stdout.readline() for _ in range(3)]
    process.stdout.close()  # the reader is gone
    assert process.wait(300) == 0, head
    listing = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listing) == built.files + 2  # every package, the archive, the manifest


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_json_prints_one_object_on_every_exit(deployment_files: Built, tmp_path: Path) -> None:
    key = str(deployment_files.public_key)
    (deployment_files.packages / "acme" / ".DS_Store").write_bytes(b"x")
    stray = run_pakman("verify", str(deployment_files.packages), "--key", key, "--json")
    assert stray.returncode == 2
    refused = _json(stray)
    assert refused["ok"] is False
    assert refused["exit_code"] == 2
    assert refused["errors"] == [f"{deployment_files.packages}/acme/.DS_Store: not an .apk or"
                                 " APKINDEX.tar.gz"]  # fmt: skip
    missing = _json(run_pakman("verify", str(tmp_path / "nowhere"), "--key", key, "--json"))
    assert missing["exit_code"] == 2
    assert missing["errors"] == [f"{tmp_path / 'nowhere'}: no such directory"]
    (deployment_files.packages / "acme" / ".DS_Store").unlink()
    ok = _json(run_pakman("verify", str(deployment_files.packages), "--key", key, "--json"))
    assert (ok["ok"], ok["exit_code"], ok["errors"], ok["packages"]) == (True, 0, [], 6)
    package = next((deployment_files.packages / "acme" / "x86_64").glob("*.apk"))
    package.write_bytes(package.read_bytes()[:-10] + b"0123456789")
    store = f"file://{tmp_path / 'store'}"
    failed = run_pakman(*publish_args(deployment_files, "--store", store, "--json"))
    assert failed.returncode == 1
    report = _json(failed)
    assert report["exit_code"] == 1
    assert any("publish refused: verification failed" in str(e) for e in report["errors"])  # type: ignore[attr-defined]


def test_the_help_documents_the_json_shape() -> None:
    for command in ("verify", "publish", "push"):
        text = run_pakman(command, "--help").stdout
        assert '"exit_code": N, "errors": [' in text, command


def test_a_name_with_a_newline_stays_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "pack\nages"
    result = run_pakman("verify", str(folder), "--key", str(V8_CONFIGS / "rails.yml"))
    one_line_error(result, 2)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run_pakman("merge", str(folder), "--no-verify", "--output", str(tmp_path / "z"))
    assert result.stderr.strip() == f"error: {tmp_path}/pack\\nages: no such directory"
