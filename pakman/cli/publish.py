"""``pakman publish``: packages and the archive to S3 or a folder, the manifest last."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import log, progress_factory, watchdog

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers
    from pakman.publish.upload import Summary

EXAMPLES = """\
  pakman publish ~/packages --archive packages.zip --store file:///srv/pakman \\
      --repository acme/app --sha "$GITHUB_SHA" --ref "$GITHUB_REF" --key acme-app.rsa.pub
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pakman publish ~/packages \\
      --archive packages.zip --bucket releases --endpoint https://s3.example.com --dry-run"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "publish",
        cmd,
        "Upload packages and the archive to S3 or a folder; manifest last.",
        examples=EXAMPLES,
    )
    p.add_argument("packages_dir", help="the merged packages tree (<repo>/<arch>/<file>)")
    options.add_archive(p, "the zip from 'pakman merge' (default: made from the packages tree)")
    options.add_store(p)
    options.add_deployment(p)
    options.add_key(p, "trusted public key: verify before uploading (repeatable)")
    options.add_no_verify(p, "upload without verifying")
    options.add_concurrency(p)
    options.add_timeout(p)
    options.add_dry_run(p, "print the plan; read storage, write nothing")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import pipeline

    watchdog(args)
    target = options.deployment(args)
    store = options.store_options(args)
    summary = pipeline.publish(
        Path(args.packages_dir),
        Path(args.archive) if args.archive else None,
        target,
        options.trust(args),
        store,
        dry_run=args.dry_run,
        timeout=args.timeout,
        log=log(args.dry_run or not sys.stderr.isatty()),
        progress_factory=None if args.dry_run else progress_factory(),
    )
    summarise(args, summary)
    return 0


def summarise(args: argparse.Namespace, summary: Summary) -> None:
    """What was shipped: the summary's fields with --json, else three lines."""
    if args.json:
        options.result(args, summary.as_dict())
    else:
        print(summary.line())
        print(f"archive: {summary.archive_path}")
        print(f"manifest: {summary.manifest}")
