"""``pakman schema``: the JSON Schema of instellar.yml, for editors and linters."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pakman.cli import options

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers


def add(subparsers: Subparsers) -> None:
    options.subcommand(
        subparsers,
        "schema",
        cmd,
        "Print the JSON Schema of instellar.yml (for editors and linters).",
    )


def cmd(args: argparse.Namespace) -> int:
    from pakman import schema

    sys.stdout.write(schema.text())
    return 0
