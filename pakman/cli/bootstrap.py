"""``pakman bootstrap``: render the APKBUILD and service files; install the signing key."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.cli import options
from pakman.cli.terminal import warn

if TYPE_CHECKING:
    from pakman.cli.options import Subparsers

EXAMPLES = """\
  # In a v8 workflow: everything comes from GITHUB_* and ABUILD_* variables.
  pakman bootstrap
  # Anywhere else:
  pakman bootstrap --workspace . --repository acme/app --version 1.2.3 --build 7 \\
      --home ~ --apk-keys-dir /etc/apk/keys"""


def add(subparsers: Subparsers) -> None:
    p = options.subcommand(
        subparsers,
        "bootstrap",
        cmd,
        "Render the APKBUILD and service files; install the signing key.",
        examples=EXAMPLES,
    )
    options.add_config(p)
    options.add_repository(p)
    p.add_argument("--version", help="package version (default: from git describe --tags)")
    options.add_build(p)
    p.add_argument("--home", help="where .abuild/ goes (default: $HOME)")
    p.add_argument(
        "--apk-keys-dir", default="/etc/apk/keys", help="trusted apk keys (default: %(default)s)"
    )
    options.add_output(p, "output folder (default: <workspace>/.apk/<org>/<name>)")
    options.add_json(p)


def cmd(args: argparse.Namespace) -> int:
    from pakman import bootstrap, render
    from pakman.identity import build_number

    workspace = options.workspace(args)
    plan = bootstrap.plan_workspace(
        options.config_path(args),
        workspace,
        options.repository(args),
        version=args.version,
        build=build_number(
            args.build if args.build is not None else options.env("GITHUB_RUN_NUMBER")
        ),
        output=Path(args.output) if args.output else None,
    )
    warn(plan.config.warnings)
    output = Path(args.output) if args.output else workspace / plan.identity.apk_dir
    writes = render.targets(plan.files, output)
    private_pem = options.env("ABUILD_PRIVATE_KEY")
    trusted = None
    if private_pem:
        from pakman import keys

        # Check the keys before writing anything, so a bad key leaves no half-done tree.
        pair = keys.check_pair(
            private_pem,
            options.env("ABUILD_PUBLIC_KEY"),
            private_name="ABUILD_PRIVATE_KEY",
            public_name="ABUILD_PUBLIC_KEY",
        )
        # abuild.conf names the key by this path, read from wherever abuild runs.
        home = Path(os.path.abspath(args.home or options.env("HOME") or Path.home()))
        apk_keys = Path(os.path.abspath(args.apk_keys_dir))
        writes |= keys.install_files(pair, home, apk_keys, plan.identity.key_name)
        trusted = keys.trusted_key_path(apk_keys, plan.identity.key_name)
    # Everything or nothing: a folder that cannot be written leaves no half-done tree.
    by_sudo = bootstrap.write(writes, trusted)
    installed = str(home / ".abuild" / plan.identity.key_name) if private_pem else None
    if args.json:
        options.result(
            args,
            {
                "output": str(output),
                "files": len(plan.files),
                "package": plan.identity.slug,
                "version": f"{plan.identity.version}-r{plan.identity.build}",
                "signing_key": installed,
                "public_key_by_sudo": by_sudo,
            },
        )
    else:
        print(f"rendered {len(plan.files)} files into {output}")
        print(f"package {plan.identity.slug} {plan.identity.version}-r{plan.identity.build}")
        if installed:
            print(
                f"signing key installed: {installed}"
                f" (public key in {args.apk_keys_dir}{', through sudo' if by_sudo else ''})"
            )
    if not private_pem:
        warn(["ABUILD_PRIVATE_KEY is not set: signing key set-up skipped"])
    return 0
