"""``pakman sign``: sign (or re-sign) every package and index of a tree, in place."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.errors import ConfigError

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  # Build without the key (abuild signs with a throwaway one), then sign with the real key:
  pakman sign ~/packages --private-key acme-app.rsa --key-name acme-app.rsa.pub
  # The key from an environment variable (default $ABUILD_PRIVATE_KEY), the name from
  # --repository or $GITHUB_REPOSITORY, refusing what the throwaway key did not sign:
  ABUILD_PRIVATE_KEY="$(cat acme-app.rsa)" pakman sign ~/packages --repository acme/app \\
      --expect-key ~/.abuild/throwaway.rsa.pub --json"""

SIGN_KEY_VARIABLE = "ABUILD_PRIVATE_KEY"
# pakman.sign's digests and its default, restated: importing pakman.sign (tarfile, gzip,
# hashlib) to build the parser slowed every command's start by about a tenth.
# tests/test_cli.py holds them equal.
ALGORITHMS = ("sha1", "sha256")
DEFAULT_ALGORITHM = "sha256"


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "sign",
        cmd,
        "Sign (or re-sign) every package and index of a tree with the real key, in place.",
        examples=EXAMPLES,
    )
    options.add_tree(p)
    options.add_private_key(p, "the private key file", required=False)
    p.add_argument(
        "--private-key-env",
        metavar="NAME",
        default=SIGN_KEY_VARIABLE,
        help="without --private-key, the variable holding the key (default: %(default)s)",
    )
    p.add_argument(
        "--key-name",
        help="the public key's file name on hosts (default: <org>-<slug>.rsa.pub of --repository)",
    )
    options.add_repository(p)
    p.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=DEFAULT_ALGORITHM,
        help="RSA signature digest (default: %(default)s; sha1 is abuild's)",
    )
    p.add_argument(
        "--expect-key",
        action="append",
        metavar="PUB",
        help="refuse a file not already signed by this key (or the signing key); repeatable",
    )
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    """Sign a packages tree in place with the real key (:func:`pakman.sign.sign_tree`)."""
    from pakman.identity import Identity
    from pakman.sign import sign_tree

    if args.private_key:
        what = f"--private-key: {args.private_key}"
        private_pem = options.private_key(args.private_key)
    else:
        what = f"${args.private_key_env}"
        value = options.env(args.private_key_env)
        if not value:
            raise ConfigError(
                f"--private-key: required: a key file, or the key in ${args.private_key_env}"
            )
        private_pem = value.encode()
    key_name = args.key_name
    if not key_name:
        if not (args.repository or options.env("GITHUB_REPOSITORY")):
            raise ConfigError(
                "--key-name: required (e.g. acme-app.rsa.pub), or --repository or"
                " $GITHUB_REPOSITORY to name it <org>-<slug>.rsa.pub"
            )
        key_name = f"{Identity(options.repository(args)).key_name}.pub"
    expect = None
    if args.expect_key:
        expect = {}
        for name in args.expect_key:
            try:
                expect[Path(name).name] = Path(name).read_bytes()
            except OSError as error:
                raise ConfigError(f"--expect-key: {name}: cannot read: {error.strerror}") from None
    report = sign_tree(
        Path(args.directory),
        private_pem,
        key_name,
        algorithm=args.algorithm,
        expect=expect,
        what=what,
    )
    if args.json:
        options.result(args, report.as_dict())
    else:
        print(report.line())
    return 0
