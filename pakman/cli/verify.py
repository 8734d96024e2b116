"""``pakman verify``: check every package and index of a tree."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import warn
from pakman.errors import ConfigError

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers
    from pakman.verify import Report

EXAMPLES = """\
  pakman verify ~/packages --key ~/.abuild/acme-app.rsa.pub
  pakman verify artifacts/ --key keys/acme-app.rsa.pub --json"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "verify",
        cmd,
        "Check every package and index: signatures, datahash, index entries.",
        examples=EXAMPLES,
    )
    options.add_tree(p)
    options.add_key(p, "trusted public key file (repeatable)")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman.verify import verify_root

    trust = options.trust(args)
    if not trust.keys:
        raise ConfigError("--key: a trusted public key is required to verify")
    return _print_report(args, verify_root(Path(args.directory), trust.public))


def _print_report(args: argparse.Namespace, report: Report) -> int:
    warn([note.removeprefix("warning: ") for note in report.notes])
    if args.json:
        options.result(args, report.as_dict())
        if not report.ok:
            args.errors = [f"{problem}" for problem in report.problems]
    else:
        for problem in report.problems:
            print(f"FAIL {problem}")
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.packages} package(s), {report.indexes} index(es): {status}")
    return 0 if report.ok else 1
