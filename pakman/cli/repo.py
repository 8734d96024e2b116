"""``pakman repo``: add verified packages to a signed apk repository; ``pakman repo check
URL``: read a repository over HTTP(S) as apk does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import log, watchdog

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  # Add this build's packages to the repository in your bucket, keeping 5 versions each:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pakman repo packages/ \\
      --key acme-app.rsa.pub --private-key acme-app.rsa --bucket releases \\
      --endpoint https://s3.example.com
  # What would change, as JSON, for a folder served over HTTP:
  pakman repo packages/ --key acme-app.rsa.pub --private-key acme-app.rsa \\
      --store file:///srv/apk --create-bucket --branch v3.23 --keep 3 --dry-run --json
  # Hosts then add https://s3.example.com/releases/alpine/v3.23/acme to
  # /etc/apk/repositories and acme-app.rsa.pub to /etc/apk/keys/."""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "repo",
        cmd,
        "Add verified packages to a signed apk repository in a bucket or folder.",
        examples=EXAMPLES,
    )
    p.add_argument("directories", nargs="+", metavar="DIR", help="packages trees (<org>/<arch>/)")
    options.add_key(p, "the public key: packages are verified with it", many=False)
    options.add_private_key(p, "its private key: signs the index (never copied)", required=True)
    options.add_store(p)
    p.add_argument(
        "--branch",
        "--alpine",
        dest="branch",
        help="Alpine branch, e.g. v3.23 (default: the config's stack, else v3.23)",
    )
    options.add_config(p)
    p.add_argument("--prefix", default="alpine", help="folder of the repository (default: alpine)")
    p.add_argument(
        "--keep", type=int, default=5, help="newest versions kept per package (default: 5)"
    )
    p.add_argument(
        "--replace", action="store_true", help="replace a version already there with other bytes"
    )
    options.add_dry_run(p, "print what would change, write nothing")
    p.add_argument(
        "--grace",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="how long a package stays downloadable after it leaves the index,"
        " e.g. 4h, 90m, 0 (default: 4h, the longest apk keeps an index)",
    )
    options.add_json(p)
    options.add_timeout(p)
    _add_check(subparsers)


def _duration(text: str) -> float:
    """``4h``, ``90m``, ``30s``, ``2d`` or plain seconds."""
    import re

    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a duration such as 4h, 90m or 0 (got {text!r})")
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found[2]]


def cmd(args: argparse.Namespace) -> int:
    from pakman import config, pipeline
    from pakman.identity import resolve_alpine
    from pakman.trust import trust_files

    watchdog(args)
    stack = None
    config_path = options.config_path(args)
    # The config only names the branch: without --config, a checkout may have none.
    if args.branch is None and (args.config or config_path.is_file()):
        stack = config.load(config_path).alpine_version
    private_pem = options.private_key(args.private_key)
    store = options.store_options(args)
    summary = pipeline.repo(
        [Path(d) for d in args.directories],
        trust_files([args.key]),  # repo's one --key
        private_pem,
        store,
        branch=resolve_alpine(args.branch, stack, option="--branch"),
        prefix=args.prefix,
        keep=args.keep,
        replace=args.replace,
        dry_run=args.dry_run,
        timeout=args.timeout,
        grace=args.grace,
        log=log(not sys.stderr.isatty() or args.dry_run),
    )
    if args.json:
        options.result(args, summary.as_dict())
    else:
        for line in summary.lines():
            print(line)
    return 0


# --- pakman repo check URL -------------------------------------------------------------


def _add_check(subparsers: Subparsers) -> None:
    """``pakman repo check URL``, parsed as its own command (``repo`` takes folders)."""
    p = options.subcommand(
        subparsers,
        "repo-check",
        cmd_check,
        "pakman repo check URL: read a repository over HTTP(S) as apk does; report every problem.",
    )
    p.prog = "pakman repo check"
    p.add_argument("url", metavar="URL", help="the repository, as in /etc/apk/repositories")
    options.add_key(p, "public key the index must verify with", required=True)
    p.add_argument("--arch", action="append", help="arch to check (repeatable; default: x86_64)")
    options.add_no_verify_tls(p, "do not verify the repository's TLS certificate")
    options.add_timeout(p, "give up after this long, exit 3 (default: %(default)g, 30 min)")
    options.add_json(p)


def cmd_check(args: argparse.Namespace) -> int:
    from pakman.repo.check import check

    watchdog(args, resumes=False)
    report = check(
        args.url,
        args.arch or ["x86_64"],
        options.trust(args).public,
        timeout=args.timeout,
        verify_tls=args.verify_tls,
    )
    if args.json:
        options.result(args, report.as_dict())
        args.errors = list(report.problems)
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.url}: {report.packages} package(s): {status}")
    return 0 if report.ok else 1
