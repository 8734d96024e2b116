"""Hostile input, lying servers and secrets: every one a clean error, nothing lost or leaked.

Through the real CLI, against moto's real S3, small real HTTP servers that misbehave, and
packages from tests/apkfactory.py. Exit codes: 1 verification, 2 bad input, 3 storage/API.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from devkit.apkfactory import SigningKey, make_package, signature_stream, write_repo
from devkit.s3 import S3Server
from pakman import keys, pipeline
from pakman.errors import PublishError
from pakman.storage.objects import hash_file
from pakman.storage.options import StoreOptions
from pakman.storage.s3 import S3Store
from tests.support.cli import one_line_error, run_bootstrap, run_pakman
from tests.support.deployment import Built, _push_env, publish_args, push
from tests.support.http import answer, http_server
from tests.support.instellar import AUTH, SHA, Instellar
from tests.support.workspace import git_workspace

SECRET = "hardening-SECRET-value-42"


# --- data integrity --------------------------------------------------------------------


def test_a_tree_rewritten_in_place_is_never_published_stale(
    tmp_path: Path, deployment_files: Built
) -> None:
    """unzip -o over the last tree: same inode, size and mtime; only the bytes (and ctime)."""
    store = tmp_path / "store"
    args = [*publish_args(deployment_files, "--no-verify"), "--store", f"file://{store}"]
    assert run_pakman(*args, "--create-bucket").returncode == 0
    package = next((deployment_files.packages / "acme" / "x86_64").glob("app0-*.apk"))
    before = package.stat()
    new = bytes(b ^ 0x5A for b in package.read_bytes())
    time.sleep(0.2)  # past the racy window of the first hashing
    with package.open("r+b") as handle:
        handle.write(new)
    os.utime(package, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (package.stat().st_ino, package.stat().st_size) == (before.st_ino, before.st_size)
    again = run_pakman(*args)
    assert again.returncode == 0, again.stderr
    stored = store / f"deployments/acme/app/{SHA}/x86_64/{package.name}"
    assert stored.read_bytes() == new


def _tree(base: Path, marker: bytes) -> Built:
    """A tree whose names and sizes do not depend on ``marker``, only its bytes do."""
    from devkit.apkfactory import SigningKey
    from pakman import merge

    key = SigningKey(KEY, "acme-app.rsa.pub")
    for arch in ("x86_64", "aarch64"):
        built = [
            make_package(key, f"app{i}", "1.0.0-r0", arch, files={"srv/a": marker * 3000})
            for i in range(6)
        ]
        write_repo(base / "packages" / "acme", key, built, arch)
    merge.write_zip(merge.collect([base / "packages"]), base / "packages.zip")
    return Built(base / "packages", base / "packages.zip", key.write_public(base / "keys"), 14)


KEY = keys.generate(2048)


def test_concurrent_publishes_of_one_sha_never_leave_a_false_manifest(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    """Two runs, same sha, different bytes, at once: a manifest, if any, tells the truth."""
    trees = [_tree(tmp_path / name, name.encode()) for name in ("one", "two")]
    env = s3_server.env()
    for _ in range(3):

        def publish(built: Built) -> subprocess.CompletedProcess[str]:
            return run_pakman(*publish_args(built, "--bucket", bucket), env=env)

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(publish, trees))
        for result in results:
            assert result.returncode in (0, 3), result.stderr
            assert "Traceback" not in result.stderr
        client = s3_server.client()
        key = f"deployments/acme/app/{SHA}/manifest.json"
        try:
            manifest = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            continue  # no manifest: the deployment does not claim to be complete
        for entry in manifest["objects"]:
            data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]


def test_an_upload_planned_before_anothers_whole_run_overwrites_nothing(
    tmp_path: Path, s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run two's uploads straddle a whole run one: one's manifest is written before two's
    last upload, which used to replace an object behind it (two then took the manifest
    down, if it lived to). That upload is conditional on what two planned against (no
    object), so it is refused: two fails, having replaced nothing, and one's manifest
    stays, true."""
    one, two = (_tree(tmp_path / name, name.encode()) for name in ("one", "two"))
    options = StoreOptions.resolve(
        s3_server.env(),
        bucket=bucket,
        concurrency=1,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    target = pipeline.deployment("acme/app", SHA)
    put = S3Store.put
    raced: list[str] = []

    def racing(self: S3Store, local: Any, progress: Any = None, **kw: Any) -> str:
        # With one upload at a time, two's last package goes up last, before its manifest:
        # run one, whole, just before it.
        if not raced and local.key.endswith("x86_64/app5-1.0.0-r0.apk"):
            raced.append(local.key)
            pipeline.publish(one.packages, None, target, _trust(one), options)
            assert _manifest(s3_server, bucket) is not None
        return put(self, local, progress, **kw)

    monkeypatch.setattr(S3Store, "put", racing)
    with pytest.raises(PublishError, match="another publish of this sha"):
        pipeline.publish(two.packages, None, target, _trust(two), options)
    assert raced
    manifest = _manifest(s3_server, bucket)
    assert manifest is not None
    client = s3_server.client()
    for entry in [*manifest["objects"], manifest["archive"]]:
        data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]


# Run two, in its own process: every upload to the deployment's prefix waits at a gate
# once planned, and the first one made signals it and hangs, for the test to SIGKILL the
# run right there.
HELD_AT_THE_GATE = """
import sys, time
from pathlib import Path
from pakman.cli import main
from pakman.storage.s3 import S3Store

gate, put = Path(sys.argv[1]), S3Store.put

def held(self, local, progress=None, **kw):
    if not local.key.startswith("deployments/"):  # the archive's own key names its bytes
        return put(self, local, progress, **kw)
    (gate / "planned").touch()
    while not (gate / "go").exists():
        time.sleep(0.01)
    etag = put(self, local, progress, **kw)
    (gate / "overwrote").touch()
    time.sleep(300)
    return etag

S3Store.put = held
sys.exit(main(sys.argv[2:]))
"""


def test_a_run_killed_after_an_overwrite_never_leaves_another_runs_manifest_false(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """Issue 27.13: two publishes of one sha, different bytes. Two plans against the
    empty bucket, then one runs whole and writes its manifest, then two uploads and is
    SIGKILLed as soon as one upload is made: nobody is left to retract one's manifest.
    Two's writes are conditional on what it planned against (If-None-Match here), so
    none is made behind one's manifest, which stays and tells the truth. Cold, in a
    loop: a fresh bucket and fresh processes each round."""
    one, two = (_tree(tmp_path / name, name.encode()) for name in ("one", "two"))
    client = s3_server.client()
    for round_ in range(3):
        bucket = f"killed-overwrite-{round_}"
        client.create_bucket(Bucket=bucket)
        gate = tmp_path / f"gate-{round_}"
        gate.mkdir()
        args = publish_args(two, "--bucket", bucket)
        second = subprocess.Popen(
            [sys.executable, "-c", HELD_AT_THE_GATE, str(gate), *args],
            env={**os.environ, **s3_server.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not (gate / "planned").exists() and second.poll() is None:
                assert time.monotonic() < deadline, "run two never planned"
                time.sleep(0.01)
            assert second.poll() is None, second.communicate()
            first = run_pakman(*publish_args(one, "--bucket", bucket), env=s3_server.env())
            assert first.returncode == 0, first.stderr
            (gate / "go").touch()
            while not (gate / "overwrote").exists() and second.poll() is None:
                assert time.monotonic() < deadline, "run two neither wrote nor stopped"
                time.sleep(0.01)
        finally:
            if second.poll() is None:
                second.kill()  # SIGKILL: no clean-up runs
            _, stderr = second.communicate()
        manifest = _manifest(s3_server, bucket)
        assert manifest is not None  # two changed nothing, so one's manifest stays
        for entry in [*manifest["objects"], manifest["archive"]]:
            data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["key"]
        assert not (gate / "overwrote").exists(), "run two overwrote an object"
        ended = subprocess.CompletedProcess(args, second.returncode, "", stderr)
        one_line_error(ended, 3, "another publish of this sha changed")


def _trust(built: Built) -> pipeline.Trust:
    return pipeline.trust_files([str(built.public_key)])


def _manifest(server: S3Server, bucket: str) -> dict[str, Any] | None:
    client = server.client()
    try:
        body = client.get_object(Bucket=bucket, Key=f"deployments/acme/app/{SHA}/manifest.json")
    except client.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body["Body"].read()))


def ok_to_everything(handler: BaseHTTPRequestHandler, method: str) -> None:
    answer(handler, 200)


def test_an_endpoint_that_answers_200_to_everything_uploads_nothing(
    deployment_files: Built,
) -> None:
    with http_server(ok_to_everything) as endpoint:
        result = run_pakman(
            *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
            env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
        )
    one_line_error(result, 3, "does not confirm the bytes sent")
    assert "uploaded" not in result.stdout


def test_a_multipart_answer_without_an_upload_id_is_a_clear_error(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    with big.open("wb") as handle:
        handle.truncate(70 * 1024 * 1024)
    local = hash_file(big, f"archives/{'0' * 64}/packages.zip")
    with http_server(ok_to_everything) as endpoint, ThreadPoolExecutor(2) as pool:
        store = S3Store("releases", endpoint, access_key_id="id", secret_access_key="key")
        with pytest.raises(PublishError, match="has no UploadId"):
            store.stage(local, pool)


def _link_tree(root: Path, kind: str, outside: Path) -> Path:
    folder = root / "acme" / "x86_64"
    if kind == "symlinked arch dir":
        real = root.parent / "elsewhere"
        shutil.move(str(folder), real)
        folder.symlink_to(real)
        return folder
    if kind == "symlink to a file outside":
        (folder / "evil.apk").symlink_to(outside)
        return folder / "evil.apk"
    if kind == "symlink to /dev/zero":
        (folder / "zero.apk").symlink_to("/dev/zero")
        return folder / "zero.apk"
    if kind == "fifo":
        os.mkfifo(folder / "pipe.apk")
        return folder / "pipe.apk"
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder / ".DS_Store"


HOSTILE_TREES = [
    "symlinked arch dir",
    "symlink to a file outside",
    "symlink to /dev/zero",
    "fifo",
    ".DS_Store",
]


@pytest.mark.parametrize("kind", HOSTILE_TREES)
def test_verify_merge_and_publish_refuse_the_same_hostile_trees(
    kind: str, tmp_path: Path, deployment_files: Built
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET)
    bad = _link_tree(deployment_files.packages, kind, outside)
    key = str(deployment_files.public_key)
    runs = {
        "verify": run_pakman("verify", str(deployment_files.packages), "--key", key, timeout=60),
        "merge": run_pakman(
            "merge",
            str(deployment_files.packages),
            "--output",
            str(tmp_path / "out.zip"),
            "--key",
            key,
            timeout=60,
        ),
        "publish": run_pakman(
            *publish_args(deployment_files, "--store", f"file://{tmp_path / 'store'}"),
            "--create-bucket",
            timeout=60,
        ),
    }
    for command, result in runs.items():
        one_line_error(result, 2, str(bad))
        assert SECRET not in result.stdout + result.stderr, command
    assert not (tmp_path / "out.zip").exists()
    assert not (tmp_path / "store").exists()


def test_two_repos_with_one_arch_file_merge_and_publish_alike(
    tmp_path: Path, deployment_files: Built
) -> None:
    """The agent keeps <arch>/<file>: two different files there are refused by both."""
    other = deployment_files.packages / "other" / "x86_64"
    other.mkdir(parents=True)
    (other / "app0-1.0.0-r0.apk").write_bytes(b"different bytes")
    merged = run_pakman(
        "merge",
        str(deployment_files.packages),
        "--output",
        str(tmp_path / "out.zip"),
        "--no-verify",
    )
    published = run_pakman(
        *publish_args(deployment_files, "--no-verify", "--store", f"file://{tmp_path / 's'}"),
        "--create-bucket",
    )
    for result in (merged, published):
        one_line_error(result, 2, "x86_64/app0-1.0.0-r0.apk")


def _forge(archive: Path, entries: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in entries:
            zipped.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize(
    ("forgery", "message"),
    [
        ("absolute", "unexpected entry '/acme/x86_64/x.apk'"),
        ("dotdot", "unexpected entry 'acme/../x86_64/x.apk'"),
        ("duplicate", "twice"),
        ("stray", "unexpected entry 'acme/x86_64/notes.txt'"),
        ("corrupt member", "is corrupt (its bytes fail their CRC)"),
    ],
)
def test_the_archive_is_checked_member_by_member(
    forgery: str, message: str, tmp_path: Path, deployment_files: Built
) -> None:
    archive = deployment_files.archive
    with zipfile.ZipFile(archive) as zipped:
        entries = [(i.filename, zipped.read(i)) for i in zipped.infolist()]
    if forgery == "corrupt member":
        # Flip one stored byte of the first member; its central directory stays intact.
        data = bytearray(archive.read_bytes())
        with zipfile.ZipFile(archive) as zipped:
            first = zipped.infolist()[0]
        start = first.header_offset + 30 + len(first.filename) + len(first.extra)
        data[start + 5] ^= 0xFF
        archive.write_bytes(bytes(data))
    else:
        extra = {
            "absolute": ("/acme/x86_64/x.apk", b"x"),
            "dotdot": ("acme/../x86_64/x.apk", b"x"),
            "duplicate": entries[0],
            "stray": ("acme/x86_64/notes.txt", b"x"),
        }[forgery]
        _forge(archive, [*entries, extra])
    result = run_pakman(
        *publish_args(deployment_files, "--archive", str(archive)),
        "--store",
        f"file://{tmp_path / 'store'}",
        "--create-bucket",
    )
    one_line_error(result, 2, message)
    assert not (tmp_path / "store").exists()


# Runs the CLI and prints its peak RSS in KiB: VmHWM belongs to this process image alone
# (ru_maxrss would include the forking pytest process).
PEAK_RSS = """
import re, sys
from pakman.cli import main
status = main(sys.argv[1:])
status_text = open("/proc/self/status").read()
print(re.search(r"VmHWM:\\s+(\\d+) kB", status_text).group(1), file=sys.stderr)
sys.exit(status)
"""


def _bomb_package(key: SigningKey, directory: Path) -> Path:
    """A small .apk whose control stream inflates to 200 MiB."""
    inflated = io.BytesIO()
    with gzip.GzipFile(fileobj=inflated, mode="wb", compresslevel=9, mtime=0) as stream:
        chunk = b"\0" * (1 << 20)
        for _ in range(200):
            stream.write(chunk)
    control = inflated.getvalue()
    data = gzip.compress(b"payload", mtime=0)
    path = directory / "acme" / "x86_64" / "bomb-1.0-r0.apk"
    path.parent.mkdir(parents=True)
    path.write_bytes(signature_stream(key, control, "sha1") + control + data)
    return path


def test_a_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    key = SigningKey(KEY, "acme-app.rsa.pub")
    bomb = _bomb_package(key, tmp_path / "packages")
    assert bomb.stat().st_size < 1024 * 1024
    public = key.write_public(tmp_path / "keys")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_RSS,
            "verify",
            str(tmp_path / "packages"),
            "--key",
            str(public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "acme/x86_64/bomb-1.0-r0.apk" in result.stdout
    assert "decompression bomb" in result.stdout
    peak_kib = int(result.stderr.strip().splitlines()[-1])
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"  # the stream inflates to 200


@pytest.mark.parametrize("what", ["package", "index"])
def test_a_gzip_stream_that_is_not_tar_fails_verification(what: str, tmp_path: Path) -> None:
    key = SigningKey(KEY, "acme-app.rsa.pub")
    folder = tmp_path / "packages" / "acme" / "x86_64"
    write_repo(folder.parent, key, [make_package(key, "app")])
    not_tar = gzip.compress(b"plain text, not a tar archive " * 40, mtime=0)
    if what == "package":
        target = folder / "app-1.0.0-r0.apk"
        target.write_bytes(signature_stream(key, not_tar, "sha1") + not_tar + not_tar)
    else:
        target = folder / "APKINDEX.tar.gz"
        target.write_bytes(signature_stream(key, not_tar, "sha1") + not_tar)
    result = run_pakman(
        "verify", str(tmp_path / "packages"), "--key", str(key.write_public(tmp_path / "k"))
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"acme/x86_64/{target.name}" in result.stdout
    assert "is not a tar archive" in result.stdout


# --- security ----------------------------------------------------------------------------


def test_the_instellar_client_never_follows_a_redirect(
    tmp_path: Path, deployment_files: Built
) -> None:
    seen: list[str] = []

    def elsewhere(handler: BaseHTTPRequestHandler, method: str) -> None:
        seen.append(handler.headers.get("authorization", "") + handler.path)
        answer(handler, 200, b"{}")

    with http_server(elsewhere) as other:

        def redirect(handler: BaseHTTPRequestHandler, method: str) -> None:
            answer(handler, 307, location=f"{other}/steal")

        with http_server(redirect) as api:
            result = push(deployment_files, _push_env(tmp_path, api))
    one_line_error(result, 3, "POST /publish/automation/callback: redirected (307)")
    assert seen == []
    assert AUTH not in result.stdout + result.stderr


def test_a_token_straddling_the_message_cut_is_redacted_whole(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    """Redaction comes before truncation: no head of a token survives the cut.

    The pads put the token across the old 300-character cut of the JSON detail, leaving
    from 1 to 31 of its characters before it.
    """
    canary = "ZQ" + "j" * 30  # no head of it occurs anywhere else
    api.package_token = canary
    for pad in range(257, 288, 3):
        api.queued[("POST", "/publish/deployments")] = [
            (422, {"errors": {"detail": "x" * pad + canary}}, {})
        ]
        result = push(
            deployment_files,
            {**_push_env(tmp_path, api.endpoint), "INSTELLAR_PACKAGE_TOKEN": canary},
        )
        one_line_error(result, 3, "unexpected status 422")
        assert "ZQ" not in result.stderr, pad


def test_endpoint_credentials_and_query_strings_never_print(deployment_files: Built) -> None:
    endpoint = f"http://{SECRET}:{SECRET}@127.0.0.1:9/?X-Amz-Signature={SECRET}"
    result = run_pakman(
        *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
        env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
        timeout=180,
    )
    one_line_error(result, 3, "storage s3://releases at http://127.0.0.1:9/")
    assert SECRET not in result.stdout + result.stderr


def test_keys_are_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """The temporary is a fresh mkstemp name (O_EXCL): old fixed names lead nowhere."""
    workspace = git_workspace(tmp_path / "ws")
    home = tmp_path / "home"
    (home / ".abuild").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for name in (".upmaru-locomo.rsa.tmp", ".upmaru-locomo.rsa.pub.tmp"):
        (home / ".abuild" / name).symlink_to(victim)
    pair = keys.generate(2048)
    result = run_bootstrap(workspace, home, tmp_path / "apk-keys", pair.private_pem.decode())
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "untouched"
    private = home / ".abuild" / "upmaru-locomo.rsa"
    assert private.read_bytes() == pair.private_pem
    assert private.stat().st_mode & 0o777 == 0o600
    leftovers = [p.name for p in (home / ".abuild").iterdir() if p.name.startswith(".u")]
    assert sorted(leftovers) == [".upmaru-locomo.rsa.pub.tmp", ".upmaru-locomo.rsa.tmp"]


# --- bad input -------------------------------------------------------------------------

BASE = "dependencies: {}\nbuild: {command: make}\n"
RUN = "run: {name: app, services: [{name: web, binary: app}]}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + 'run: {name: "app\\n", services: [{name: web, binary: app}]}\n', "run.name"),
        (RUN + 'dependencies: {runtime: ["bash\\n"]}\nbuild: {command: make}\n', "runtime[0]"),
        (RUN + 'dependencies: {}\nbuild: {command: make, destinations: ["x\\n"]}\n', "[0]"),
        (RUN + BASE + 'architectures: ["x86_64\\n"]\n', "architectures[0]"),
        (RUN + BASE + "build: {command: other}\n", "duplicate key 'build' (first on line 3)"),
        ("type: [a]\n" + RUN + BASE, "type: must be one of default, static, custom"),
        (RUN + BASE + "x: " + "[" * 20000 + "]" * 20000 + "\n", "nesting depth"),
        (RUN + BASE + "kits: [web]\n", "kits[0]: must be a mapping with a name"),
        (RUN + BASE + "page: [1]\n", "page: must be a mapping"),
        (RUN + BASE + "kits: [{name: web, at: 2024-01-01}]\n", "kits[0].at: must be a string"),
        (RUN + BASE + "kits: [{name: web, x: " + json.dumps("y" * 300_000) + "}]\n", "KiB"),
    ],
)
def test_hostile_configs_are_one_line_errors(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "instellar.yml"
    path.write_text(text)
    result = run_pakman("check", "--config", str(path), timeout=60)
    one_line_error(result, 2, message)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    path = tmp_path / "instellar.yml"
    path.write_text("\n".join(lines) + "\n" + RUN + BASE + "kits: *i\n")
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "once its aliases are expanded" in result.stderr
    assert int(result.stderr.strip().splitlines()[-1]) < 200 * 1024  # KiB


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


def test_api_answers_of_the_wrong_shape_are_errors_naming_the_path(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    api.queued[("GET", f"/publish/deployments/{SHA}")] = [(200, {"data": ["not", "a", "map"]}, {})]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint))
    one_line_error(result, 3, f"GET /publish/deployments/{SHA}: unexpected answer")


def test_a_deployment_without_an_id_never_posts_to_none(
    tmp_path: Path, api: Instellar, deployment_files: Built
) -> None:
    api.queued[("POST", "/publish/deployments")] = [(201, {"data": {"attributes": {}}}, {})]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint))
    one_line_error(result, 3, "no usable deployment id")
    assert not [p for p in api.paths() if "None" in p]


def test_an_unexpected_failure_is_one_redacted_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last-resort handler: any exception a command did not expect."""
    from pakman import cli

    def explode(_: Any) -> int:
        raise RuntimeError(f"boom at https://user:{SECRET}@example.com/?sig={SECRET}")

    monkeypatch.setenv("INSTELLAR_AUTH_TOKEN", SECRET)
    monkeypatch.setattr(cli, "cmd_check", explode)
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)
    assert cli.main(["check"]) == 1
    line = errors.getvalue().strip()
    assert line.startswith("error: unexpected RuntimeError: boom at https://***@example.com/?***")
    assert SECRET not in line
    assert "\n" not in line


# --- deadlines ---------------------------------------------------------------------------


def test_a_trickling_server_is_bounded_by_the_timeout(deployment_files: Built) -> None:
    def trickle(handler: BaseHTTPRequestHandler, method: str) -> None:
        handler.send_response(200)
        handler.send_header("content-length", "1000000")
        handler.end_headers()
        for _ in range(600):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.5)

    with http_server(trickle) as endpoint:
        result = run_pakman(
            *publish_args(deployment_files, "--bucket", "releases", "--endpoint", endpoint),
            "--timeout",
            "2",
            env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
            timeout=120,  # a guard for the test itself: the run must end long before
        )
    one_line_error(result, 3, "gave up after 2 s (--timeout)")


def test_retry_after_is_capped(tmp_path: Path, api: Instellar, deployment_files: Built) -> None:
    """A server asking for an hour's pause is retried within the backoff cap."""
    busy = (503, {"errors": "busy"}, {"Retry-After": "3600"})
    api.queued[("POST", "/publish/automation/callback")] = [busy, busy]
    result = push(deployment_files, _push_env(tmp_path, api.endpoint), timeout=120)
    assert result.returncode == 0, result.stderr
    assert api.paths().count("POST /publish/automation/callback") == 3


def test_help_documents_the_timeout() -> None:
    for command in ("publish", "push"):
        out = run_pakman(command, "--help").stdout
        assert "--timeout SECONDS" in out
        assert "a re-run resumes" in textwrap.dedent(out).replace("\n", " ").replace("  ", " ")
