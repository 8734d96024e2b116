"""``pakman check``: validate instellar.yml and report every problem."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import warn

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  pakman check
  pakman check --config deploy/instellar.yml"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "check",
        cmd,
        "Validate instellar.yml and report every problem.",
        examples=EXAMPLES,
    )
    options.add_config(p)
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import config
    from pakman.pipeline import check_summary

    path = options.config_path(args)
    cfg = config.load(path)
    lines = check_summary(cfg, str(path)).splitlines()
    if args.json:
        options.result(
            args,
            {"config": str(path), "type": cfg.type, "architectures": list(cfg.architectures)},
        )
    else:
        print(lines[0])
    warn([line.removeprefix("warning: ") for line in lines[1:]])
    return 0
