"""``pakman sign``: the real key signs a tree built with a throwaway one, in PAKman's code.

What a host sees is checked with real apk-tools 3 in the Alpine 3.23 root: ``apk verify``
and ``apk add`` trusting only the real key.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import cli, sign
from tests.support.cli import run_pakman
from tests.support.paths import ROOT
from tests.unit.test_sign import (
    FOLDER,
    NAME,
    build,
    contents,
    first_stream,
    pair,
    problems,
    throwaway,
)


def private_key_file(tmp_path: Path, which: str = "real") -> Path:
    path = tmp_path / "secret" / "acme-app.rsa"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(pair(which).private_pem)
    return path


def signature_entries(path: Path) -> list[str]:
    data = path.read_bytes()
    raw = gzip.decompress(data[: first_stream(data)])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return [member.name for member in tar]


# --- what a host sees ------------------------------------------------------------------


def test_the_default_is_rsa_sha256_as_the_docs_say(tmp_path: Path) -> None:
    top = build(tmp_path / "packages")
    done = run_pakman("sign", str(top), "--private-key", str(private_key_file(tmp_path)),
                      "--repository", "Acme/App")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert signature_entries(top / FOLDER / "app-1.2.3-r0.apk") == [".SIGN.RSA256." + NAME]
    assert sign.DEFAULT_ALGORITHM == "sha256"
    page = (ROOT / "docs" / "security.md").read_text()
    docs = page[: page.index("\n## What is trusted")]  # the signing sections
    assert "`--algorithm sha256` is the default" in docs
    helped = run_pakman("sign", "--help").stdout
    for option in sorted({word for word in docs.split("`") if word.startswith("--")}):
        assert option.split()[0] in helped, option  # every option they name is sign's
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    every = {o for p in sub.choices.values() for a in p._actions for o in a.option_strings}
    for option in sorted({word for word in page.split("`") if word.startswith("--")}):
        assert option.split()[0] in every, option  # the rest of the page: some command's


def test_the_commands_algorithms_are_the_signers() -> None:
    """The parser restates them, so that building it does not import pakman.sign."""
    from pakman.cli import sign as command

    assert set(command.ALGORITHMS) == set(sign.PREFIXES)
    assert command.DEFAULT_ALGORITHM == sign.DEFAULT_ALGORITHM


# --- bytes kept, bytes made ------------------------------------------------------------


# --- refusals ----------------------------------------------------------------------------


def _sign(top: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_pakman("sign", str(top), "--private-key", str(private_key_file(tmp_path)),
                      "--key-name", NAME, *extra)  # fmt: skip


def test_a_signature_by_another_key_is_refused_when_a_key_is_expected(tmp_path: Path) -> None:
    top = tmp_path / "packages"
    intruder = SigningKey(pair("intruder"), "intruder.rsa.pub")
    good = make_package(throwaway(), "app", "1.2.3-r0")
    planted = make_package(intruder, "app-data", "1.2.3-r0")
    write_repo(top / "acme", throwaway(), [good, planted])
    expected = throwaway().write_public(tmp_path / "throwaway")
    before = contents(top)
    refused = _sign(top, tmp_path, "--expect-key", str(expected))
    assert refused.returncode == 1
    assert refused.stderr == (
        f"error: {top}/{FOLDER}/app-data-1.2.3-r0.apk: UNTRUSTED signature: signed with key"
        f" intruder.rsa.pub, and no trusted key ({NAME}, {throwaway().name}) verifies it"
        " (--expect-key)\n"
    )
    assert contents(top) == before  # nothing written, not even the good files
    # A key of the expected name that did not make the signature is refused too.
    forged = make_package(SigningKey(pair("intruder"), throwaway().name), "app-data", "1.2.3-r0")
    write_repo(top / "acme", throwaway(), [good, forged])
    refused = _sign(top, tmp_path, "--expect-key", str(expected))
    assert refused.returncode == 1
    assert f"bad signature: does not verify with {throwaway().name}" in refused.stderr
    # Without --expect-key, whatever signature is there is replaced, and said so.
    write_repo(top / "acme", throwaway(), [good, planted])
    replaced = _sign(top, tmp_path, "--json")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["replaced"] == [throwaway().name, "intruder.rsa.pub"]
    # Re-signing what the key itself signed passes --expect-key: a re-run is harmless.
    again = _sign(top, tmp_path, "--expect-key", str(expected), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == []


def _corrupt(folder: Path, case: str) -> str:
    """Spoil the tree one way; the problem it must be refused with."""
    package = folder / "app-1.2.3-r0.apk"
    data = package.read_bytes()
    if case == "not a package":
        (folder / "notes.apk").write_text("hello\n")
        return "notes.apk: not a v2 apk file (no gzip stream)"
    if case == "truncated data":
        package.write_bytes(data[:-40])
        return "app-1.2.3-r0.apk: integrity error: the data stream does not match datahash"
    if case == "truncated head":
        package.write_bytes(data[: first_stream(data) + 30])
        return "app-1.2.3-r0.apk: truncated"
    if case == "apk v3":
        package.write_bytes(b"ADBd" + data)
        return "app-1.2.3-r0.apk: apk v3 format is not supported yet"
    if case == "truncated index":
        path = folder / "APKINDEX.tar.gz"
        path.write_bytes(path.read_bytes()[:-9])
        return "APKINDEX.tar.gz: "
    assert case == "index mismatch"
    other = make_package(throwaway(), "app", "1.2.3-r0", files={"usr/share/app/x": b"other\n"})
    package.write_bytes(other.data)
    return "APKINDEX.tar.gz: app-1.2.3-r0.apk: integrity error: does not match its index entry (C:)"


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("not a package", 2),
        ("truncated data", 2),
        ("truncated head", 2),
        ("apk v3", 2),
        ("truncated index", 2),
        ("index mismatch", 1),
    ],
)
def test_a_spoiled_tree_is_refused_and_nothing_is_written(
    tmp_path: Path, case: str, code: int
) -> None:
    top = build(tmp_path / "packages")
    problem = _corrupt(top / FOLDER, case)
    before = contents(top)
    refused = _sign(top, tmp_path)
    assert refused.returncode == code
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"error: {top}/{FOLDER}/{problem}"), refused.stderr
    assert contents(top) == before  # the good files too, and no temporary left behind


# --- options and secrets ---------------------------------------------------------------


def test_options_are_checked_with_one_line_each(tmp_path: Path) -> None:
    top = build(tmp_path / "packages")
    key = str(private_key_file(tmp_path))
    cases = {
        ("--private-key", key): "error: --key-name: required (e.g. acme-app.rsa.pub), or"
        " --repository or $GITHUB_REPOSITORY to name it <org>-<slug>.rsa.pub",
        ("--private-key", key, "--key-name", "keys/a.rsa.pub"): "error: --key-name: must be a"
        " file name of printable ASCII without '/', at most 255 characters, e.g."
        " acme-app.rsa.pub (got 'keys/a.rsa.pub')",
        ("--private-key", str(tmp_path / "none"), "--key-name", NAME): "error: --private-key:"
        f" {tmp_path}/none: cannot read: No such file or directory",
        ("--key-name", NAME): "error: --private-key: required: a key file, or the key in"
        " $ABUILD_PRIVATE_KEY",
        ("--private-key", key, "--key-name", NAME, "--expect-key", "no.pub"): "error:"
        " --expect-key: no.pub: cannot read: No such file or directory",
    }
    before = contents(top)
    for args, message in cases.items():
        result = run_pakman("sign", str(top), *args)
        assert (result.returncode, result.stderr) == (2, message + "\n"), args
    assert contents(top) == before


def test_the_key_reaches_no_output_error_or_file(tmp_path: Path) -> None:
    top = build(tmp_path / "packages")
    pem = pair("real").private_pem.decode()
    lines = [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    broken = "\n".join(pem.splitlines()[:8]) + "\n"  # a key cut short: not a key at all
    runs = [
        run_pakman("sign", str(top), "--private-key-env", "SIGNING_KEY", "--key-name", NAME,
                   "--json", env={"SIGNING_KEY": broken}),
        run_pakman("sign", str(top), "--key-name", NAME, env={"ABUILD_PRIVATE_KEY": broken}),
        run_pakman("sign", str(top), "--repository", "acme/app", "--json",
                   env={"ABUILD_PRIVATE_KEY": pem}),
    ]  # fmt: skip
    assert [r.returncode for r in runs] == [2, 2, 0]
    assert json.loads(runs[0].stdout)["errors"] == [
        "$SIGNING_KEY: not an unencrypted PEM private key"
    ]
    assert runs[1].stderr == "error: $ABUILD_PRIVATE_KEY: not an unencrypted PEM private key\n"
    for result in runs:
        for line in lines:
            assert line not in result.stdout + result.stderr
        assert "PRIVATE KEY" not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            assert lines[3].encode() not in data, path
    assert problems(top) == []
