"""``pakman keygen``: a 4096-bit RSA signing key pair named ``<org>-<slug>.rsa``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.errors import ConfigError

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  pakman keygen --repository acme/app --output keys/"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "keygen",
        cmd,
        "Make a 4096-bit RSA signing key pair named <org>-<slug>.rsa.",
        examples=EXAMPLES,
    )
    options.add_repository(p)
    options.add_output(p, "folder for the key files (default: .)", default=".")
    p.add_argument("--bits", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="replace a key pair already there")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import keys
    from pakman.identity import Identity

    identity = Identity(options.repository(args))
    output = Path(args.output)
    # Checked before the (slow) key generation: the old key signed every package on hosts.
    existing = [
        path
        for path in (output / identity.key_name, output / f"{identity.key_name}.pub")
        if path.exists() or path.is_symlink()
    ]
    if existing and not args.force:
        raise ConfigError(
            f"{existing[0]}: a key is already there; keygen keeps it"
            " (--force replaces it, and packages signed by it will no longer verify)"
        )
    pair = keys.generate(args.bits)
    private_path, public_path = keys.write_pair(pair, output, identity.key_name)
    fingerprint = f"sha256:{keys.fingerprint(pair.public_pem)}"
    if args.json:
        options.result(
            args,
            {
                "private_key": str(private_path),
                "public_key": str(public_path),
                "fingerprint": fingerprint,
            },
        )
    else:
        print(f"wrote {private_path} (keep it secret) and {public_path}")
        print(f"fingerprint {fingerprint}")
    return 0
