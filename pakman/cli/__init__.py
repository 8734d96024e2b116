"""The ``pakman`` command line: the parser, assembled from one module per subcommand,
and the one error boundary every command runs inside.

Each subcommand parses its options, calls the library and prints. Heavy imports (boto3,
cryptography) happen inside the subcommands that need them, so ``check`` and
``bootstrap`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pakman import __version__
from pakman.cli import (
    bootstrap,
    check,
    keygen,
    merge,
    publish,
    push,
    repo,
    schema,
    sign,
    terminal,
    verify,
)
from pakman.errors import PakmanError

# In the order ``pakman --help`` lists them (``repo`` adds ``repo check`` too).
COMMANDS = (check, bootstrap, keygen, schema, verify, merge, publish, repo, sign, push)


class _Refused(Exception):
    """An argument error: argparse's own message, reported as one error line."""


class _Parser(argparse.ArgumentParser):
    """An argument error is one ``error:`` line (and, with --json, one object), exit 2,
    as every other refusal; argparse would print its usage and exit by itself."""

    def error(self, message: str) -> NoReturn:
        raise _Refused(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pakman",
        description="Build signed Alpine packages from instellar.yml and ship them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'pakman <command> --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"pakman {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command in COMMANDS:
        command.add(subparsers)
    return parser


# Environment variables whose values must never be printed, whatever goes wrong.
SECRET_VARIABLES = (
    "ABUILD_PRIVATE_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "INSTELLAR_AUTH_TOKEN",
    "INSTELLAR_PACKAGE_TOKEN",
)


def _last_resort(error: BaseException) -> tuple[str, int]:
    """One line for an error no command expected: OSError is a local problem (exit 2)."""
    from pakman.errors import redact
    from pakman.recipe import PEM_BLOCK

    secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        text, code = f"{where}{error.strerror or error.__class__.__name__}", 2
    else:
        text, code = f"unexpected {error.__class__.__name__}: {error}", 1
    text = PEM_BLOCK.sub("[key material removed]", text)
    line = redact(" ".join(text.split()), secrets, limit=300)
    return f"error: {line} (PAKMAN_DEBUG=1 shows a traceback)", code


def _one_line(text: str) -> str:
    """A problem as one line: a newline or other control character inside a value (a
    name, a path) is shown escaped, never split over lines."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; every failure is one line and an exit code.

    With ``--json`` every exit prints one object on stdout: the command's fields (none
    on a refusal), ``exit_code`` and ``errors``, its error lines ([] on success).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    given = list(argv)
    if given[:2] == ["repo", "check"]:
        given = ["repo-check", *given[2:]]
    try:
        args = parser.parse_args(given)
    except _Refused as refused:
        line = _one_line(str(refused))
        print(f"error: {line}", file=sys.stderr)
        if "--json" in given:
            print(json.dumps({"ok": False, "exit_code": 2, "errors": [line]}, indent=2))
        return 2
    errors: list[str] = []
    try:
        code = int(args.func(args))
    except PakmanError as error:
        errors = [_one_line(line.removeprefix("error: ")) for line in error.problems]
        code = error.exit_code
    except KeyboardInterrupt:
        errors, code = ["interrupted"], 130
    except Exception as error:
        if os.environ.get("PAKMAN_DEBUG") == "1":
            raise
        line, code = _last_resort(error)
        errors = [_one_line(line.removeprefix("error: "))]
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if getattr(args, "json", False):
        fields = getattr(args, "result", {})
        reported = getattr(args, "errors", errors) if code else []
        result = {"ok": code == 0, **fields, "exit_code": code, "errors": reported or errors}
        print(json.dumps(result, indent=2))
    return code


def run() -> NoReturn:
    """The ``pakman`` command: :func:`main` over streams whose failures never stop the job,
    then exit without the interpreter's teardown (:func:`terminal.leave`)."""
    terminal.take_over()
    terminal.leave(main())
