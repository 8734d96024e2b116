"""``pakman merge``: per-arch outputs into one tree and a deterministic packages.zip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import log

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  pakman merge ~/packages --output packages.zip
  pakman merge artifacts/*/ --output packages.zip --packages-dir merged/ --key acme-app.rsa.pub"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "merge",
        cmd,
        "Merge per-arch outputs into one tree and a deterministic packages.zip.",
        examples=EXAMPLES,
    )
    p.add_argument("artifacts", nargs="+", help="abuild ~/packages folders or downloaded artifacts")
    options.add_output(p, "the zip to write (default: %(default)s)", default="packages.zip")
    options.add_packages_dir(p, "also write the merged tree here")
    options.add_key(p, "trusted public key file (repeatable)")
    options.add_no_verify(p, "skip verification before zipping")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import pipeline

    merged, digest = pipeline.merge(
        [Path(d) for d in args.artifacts],
        Path(args.output),
        options.trust(args),
        packages_dir=Path(args.packages_dir) if args.packages_dir else None,
        log=log(False),
    )
    if args.json:
        options.result(
            args,
            {
                "archive": args.output,
                "files": len(merged.entries),
                "architectures": list(merged.architectures),
                "sha256": digest,
                "packages_dir": args.packages_dir,
            },
        )
    else:
        print(
            f"wrote {args.output}: {len(merged.entries)} files for "
            f"{', '.join(merged.architectures)}, sha256 {digest}"
        )
    return 0
