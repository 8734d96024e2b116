"""The options more than one command takes, each declared once, here, by its group, and
a command's parser (:func:`subcommand`).

A command adds the groups it needs; a group's resolver turns its parsed values into
what the library takes (:func:`store_options`, :func:`deployment`, :func:`trust`).
Where a second spelling exists, it is the Dagger module's name for the same option.
An option only one command takes is declared in that command's module.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pakman.errors import ConfigError
from pakman.publish.deployment import Deployment
from pakman.storage.options import DEFAULT_CONCURRENCY, StoreOptions
from pakman.trust import Trust, trust_files

if TYPE_CHECKING:
    from typing import TypeAlias

    Command: TypeAlias = Callable[[argparse.Namespace], int]
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

JSON_NOTE = """
--json: every exit prints one JSON object on stdout, error or not:
  {"ok": true|false, ...the command's fields..., "exit_code": N, "errors": ["...", ...]}
  A refusal (bad input, exit 2) has no command fields; errors holds each error line, and
  they are on stderr too. With stdout closed nothing is printed: the exit code is the job's."""


def subcommand(
    subparsers: Subparsers,
    name: str,
    func: Command,
    text: str,
    *,
    examples: str | None = None,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """A command's parser: its one-line description and its examples."""
    parser = subparsers.add_parser(
        name,
        aliases=aliases,
        help=text,
        description=text,
        epilog=f"examples:\n{examples}" if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def env(name: str) -> str | None:
    """An environment variable, an empty one counting as unset (as in a workflow)."""
    return os.environ.get(name) or None


# --- the application: --config, --workspace, --repository, --build -----------------------


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="instellar.yml; a relative path is taken from the workspace"
        " (default: <workspace>/instellar.yml)",
    )
    parser.add_argument(
        "--workspace",
        "--source",
        dest="workspace",
        help="the application's checkout (default: $GITHUB_WORKSPACE or .)",
    )


def workspace(args: argparse.Namespace) -> Path:
    return Path(args.workspace or env("GITHUB_WORKSPACE") or ".").resolve()


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, the one meaning of every command: the instellar.yml to read, a
    relative path taken from the workspace (``--workspace``, else ``$GITHUB_WORKSPACE``,
    else the current folder, where v8's push and bootstrap looked)."""
    if not args.config:
        return workspace(args) / "instellar.yml"
    if args.workspace or env("GITHUB_WORKSPACE"):
        return workspace(args) / str(args.config)
    return Path(args.config)


def add_repository(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", help="owner/name (default: $GITHUB_REPOSITORY)")


def repository(args: argparse.Namespace) -> str:
    found = args.repository or env("GITHUB_REPOSITORY")
    if not found:
        raise ConfigError("--repository: required (or set GITHUB_REPOSITORY), e.g. acme/app")
    return str(found)


def add_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build",
        "--build-number",
        dest="build",
        help="build number, the pkgrel (default: $GITHUB_RUN_NUMBER or 0)",
    )


def add_deployment(parser: argparse.ArgumentParser) -> None:
    """What is published: --repository, --sha, --ref, --build."""
    add_repository(parser)
    parser.add_argument("--sha", help="commit sha (default: $WORKFLOW_SHA or $GITHUB_SHA)")
    parser.add_argument("--ref", help="git ref (default: $WORKFLOW_REF or $GITHUB_REF)")
    add_build(parser)


def deployment(args: argparse.Namespace) -> Deployment:
    return Deployment.resolve(args.repository, args.sha, args.ref, args.build, os.environ)


# --- trust: --key, --no-verify, --private-key -------------------------------------------


def add_key(
    parser: argparse.ArgumentParser, text: str, *, many: bool = True, required: bool = False
) -> None:
    """``--key``: repeatable, except in ``repo``, whose one key also names the index's."""
    parser.add_argument(
        "--key",
        "--public-key",
        dest="key",
        action="append" if many else "store",
        required=required or not many,
        help=text,
    )


def add_no_verify(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--no-verify", "--skip-verify", dest="no_verify", action="store_true", help=text
    )


def trust(args: argparse.Namespace) -> Trust:
    """The ``--key`` files, unless ``--no-verify`` (where the command has it)."""
    return trust_files(args.key or (), skip=getattr(args, "no_verify", False))


def add_private_key(parser: argparse.ArgumentParser, text: str, *, required: bool) -> None:
    parser.add_argument("--private-key", metavar="FILE", required=required, help=text)


def private_key(path: str) -> bytes:
    """The ``--private-key`` file's bytes; an unreadable file is an option error."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"--private-key: {path}: cannot read: {error.strerror}") from None


# --- what a command reads and writes -----------------------------------------------------


def add_tree(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a packages tree (<repo>/<arch>/...)")


def add_output(parser: argparse.ArgumentParser, text: str, *, default: str | None = None) -> None:
    """``--output``: where the command writes (a folder, or merge's zip)."""
    parser.add_argument("--output", default=default, help=text)


def add_packages_dir(parser: argparse.ArgumentParser, text: str) -> None:
    """``--packages-dir``: the merged tree, written by merge and read by push."""
    parser.add_argument("--packages-dir", help=text)


def add_archive(parser: argparse.ArgumentParser, text: str, *, default: str | None = None) -> None:
    parser.add_argument("--archive", default=default, help=text)


# --- storage: where packages go ---------------------------------------------------------


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bucket", help="S3 bucket; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    )
    parser.add_argument("--store", help="file:///path for a local store, or s3://bucket")
    parser.add_argument(
        "--endpoint", help="S3-compatible endpoint URL (default: AWS or $AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--region", help="S3 region (default: $AWS_REGION or us-east-1)")
    parser.add_argument("--addressing-style", default="auto", choices=("auto", "path", "virtual"))
    add_no_verify_tls(
        parser, "do not verify the endpoint's TLS certificate (the module's --verify-tls=false)"
    )
    parser.add_argument(
        "--verify-tls",
        dest="verify_tls",
        type=_boolean,
        metavar="true|false",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--create-bucket", action="store_true", help="create the bucket or folder if missing"
    )


def add_no_verify_tls(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--no-verify-tls",
        dest="verify_tls",
        action="store_const",
        const=False,
        default=True,
        help=text,
    )


def _boolean(text: str) -> bool:
    """A boolean as the Dagger module spells it: --verify-tls=false."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false (got {text!r})")
    return text.lower() == "true"


def store_options(args: argparse.Namespace) -> StoreOptions:
    """``--bucket``/``--store`` and the S3 options publish and repo share."""
    return StoreOptions.resolve(
        os.environ,
        bucket=args.bucket,
        store=args.store,
        endpoint=args.endpoint,
        region=args.region,
        addressing_style=args.addressing_style,
        verify_tls=args.verify_tls,
        concurrency=getattr(args, "concurrency", DEFAULT_CONCURRENCY),
        create_bucket=args.create_bucket,
    )


# --- how a run goes: --concurrency, --timeout, --dry-run, --json -------------------------


def add_concurrency(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="parallel uploads (default: %(default)s)",
    )


def add_timeout(
    parser: argparse.ArgumentParser,
    text: str = "give up after this long, exit 3; a re-run resumes (default: %(default)g, 30 min)",
    *,
    default: float | None = None,
) -> None:
    """``--timeout``: the whole run's deadline."""
    if default is None:
        from pakman.pipeline import DEFAULT_TIMEOUT

        default = DEFAULT_TIMEOUT
    parser.add_argument("--timeout", type=float, default=default, metavar="SECONDS", help=text)


def add_dry_run(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--dry-run", action="store_true", help=text)


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json``, and below the command's examples, what it prints."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on every exit (see below)"
    )
    parser.epilog = f"{parser.epilog}\n{JSON_NOTE}" if parser.epilog else JSON_NOTE.lstrip()


def result(args: argparse.Namespace, fields: dict[str, object]) -> None:
    """With --json, the command's fields: main() prints them, with the exit code and the
    error lines, as the one object of every exit."""
    args.result = fields
