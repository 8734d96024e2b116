"""``pakman push`` (also ``deploy``): v8's push, to Instellar-provided storage, and the
deployment registered."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.publish import summarise
from pakman.cli.terminal import log, progress_factory, watchdog
from pakman.placement import v8_archive
from pakman.publish.instellar import InstellarOptions
from pakman.trust import trust_for_push

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  # The v8 deploy step, unchanged (INSTELLAR_* and GITHUB_* variables):
  pakman push --archive packages.zip"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "push",
        cmd,
        "v8's push: upload to Instellar-provided storage and register the deployment.",
        examples=EXAMPLES,
        aliases=["deploy"],  # the Dagger module's name
    )
    p.add_argument(
        "--instellar-endpoint",
        help="the deployment API (default: $INSTELLAR_ENDPOINT or https://opsmaru.com)",
    )
    options.add_archive(
        p,
        "the zip (default: %(default)s, else in $HOME as v8 looked, else made from the tree)",
        default="packages.zip",
    )
    options.add_config(p)
    options.add_concurrency(p)
    options.add_timeout(p)
    options.add_packages_dir(p, "packages tree (default: $HOME/packages, as v8)")
    options.add_deployment(p)
    options.add_key(p, "trusted public key (default: $ABUILD_PUBLIC_KEY, else ~/.abuild/<key>.pub)")
    options.add_no_verify(p, "upload without verifying")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import config, pipeline

    watchdog(args)
    home = Path(options.env("HOME") or Path.home())
    cfg = config.load(options.config_path(args))
    target = options.deployment(args)
    trust = trust_for_push(args.key or (), target.identity, os.environ, home, skip=args.no_verify)
    pushed = pipeline.push(
        Path(args.packages_dir) if args.packages_dir else home / "packages",
        v8_archive(args.archive, home),
        target,
        trust,
        cfg,
        InstellarOptions.resolve(os.environ, endpoint=args.instellar_endpoint),
        concurrency=args.concurrency,
        timeout=args.timeout,
        log=log(not sys.stderr.isatty()),
        progress_factory=progress_factory(),
    )
    if args.json:
        options.result(args, pushed.as_dict())
        return 0
    if pushed.summary is not None:
        summarise(args, pushed.summary)
    print(f"deployment {pushed.deployment}: {pushed.archive_path}")
    if pushed.configuration:
        print(f"configuration {pushed.configuration}")
    return 0
