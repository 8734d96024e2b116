from __future__ import annotations

import argparse
import ast
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pakman import cli
from pakman.cli import terminal
from pakman.pipeline import DEFAULT_TIMEOUT
from tests.support.paths import ROOT


def test_the_modules_option_names_are_the_clis_too() -> None:
    """Every parameter of the Dagger module's functions is an option of the same command
    (or one the CLI deliberately reads elsewhere); the module's spelling is an alias."""
    tree = ast.parse((ROOT / "ci/src/pakman_ci/main.py").read_text())
    (pakman,) = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Pakman"]
    module: dict[str, list[str]] = {
        f.name: [a.arg for a in (*f.args.args[1:], *f.args.kwonlyargs)]
        for f in pakman.body
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and not f.name.startswith("_")
    }
    module["bootstrap"] += ["config"]  # the module's own --config, of every function
    commands = {"bootstrap", "merge", "publish", "deploy", "repo", "keygen", "check"}
    parser = cli.build_parser()
    missing = []
    for command in sorted(commands):
        options = _options(parser, command)
        for name in module[command]:
            if name in NOT_OPTIONS:
                continue
            if f"--{name.replace('_', '-')}" not in options:
                missing.append(f"{command} --{name.replace('_', '-')}")
    assert missing == []


# The module's parameters that are not CLI options, and why (also in docs/cli.md).
NOT_OPTIONS = {
    "packages": "a positional argument",
    "access_key_id": "environment only: AWS_ACCESS_KEY_ID",
    "secret_access_key": "environment only: AWS_SECRET_ACCESS_KEY",
    "instellar_auth_token": "environment only: INSTELLAR_AUTH_TOKEN",
    "instellar_package_token": "environment only: INSTELLAR_PACKAGE_TOKEN",
    "repository": "merge names keys by their files; elsewhere an option",
}


def _options(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """A command's option strings, each with the destination it sets."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        option: action.dest
        for action in sub.choices[command]._actions
        for option in action.option_strings
    }


def test_one_meaning_per_option_name() -> None:
    """An option string sets the same destination in every command, and --repository is
    an option wherever a command has one (merge, the exception, has none)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    meaning: dict[str, set[str]] = {}
    for command in sub.choices:
        for option, dest in _options(parser, command).items():
            meaning.setdefault(option, set()).add(dest)
    assert {o: d for o, d in meaning.items() if len(d) > 1} == {}
    aliases = {
        "--public-key": "key", "--skip-verify": "no_verify", "--build-number": "build",
        "--source": "workspace", "--alpine": "branch", "--verify-tls": "verify_tls",
    }  # fmt: skip
    for alias, dest in aliases.items():
        assert meaning[alias] == {dest}, alias


def test_one_table_documents_every_option_and_its_alias() -> None:
    docs = (ROOT / "docs/cli.md").read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `--")]
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = set()
    for command, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            if action.help == argparse.SUPPRESS or action.dest in ("help", "bits"):
                continue
            names = [o for o in action.option_strings if o != "--verify-tls"]
            if names and not any(all(f"`{n}" in row for n in names) for row in rows):
                undocumented.add(f"{command} {' '.join(names)}")
    assert undocumented == set()
    assert "`--verify-tls=false`" in docs
    for command in sub.choices:
        json_commands = [c for c in sub.choices if "--json" in _options(parser, c)]
        assert command in json_commands or command == "schema", command


def test_repo_check_takes_the_shared_key_timeout_and_json_options() -> None:
    """As the changelog says: `repo check` declares --key (and --public-key), --timeout
    and --json through the shared groups, with the same destinations as every command."""
    parsed = cli.build_parser().parse_args(
        ["repo-check", "https://example.test/alpine", "--public-key", "k.pub", "--json"]
    )
    assert parsed.key == ["k.pub"]
    assert parsed.json is True
    # The whole run's deadline, as everywhere (it was each read's, 60 s).
    assert parsed.timeout == DEFAULT_TIMEOUT


class Yielding(io.StringIO):
    """A stream that lets other threads run between writes, as a pipe's does."""

    def write(self, text: str) -> int:
        written = super().write(text)
        time.sleep(0)
        return written


def test_lines_logged_from_threads_at_once_stay_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads log from their threads: no line runs into another."""
    stream = Yielding()
    monkeypatch.setattr(sys, "stderr", stream)
    write = terminal.log(True)
    lines = [f"put    deployments/k{n:04}.apk ({n} bytes)" for n in range(2000)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, lines))
    assert sorted(stream.getvalue().splitlines()) == sorted(lines)
