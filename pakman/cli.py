"""The ``pakman`` command line: one small function per subcommand.

Each parses its options, calls the library and prints. Heavy imports (boto3,
cryptography) happen inside the subcommands that need them, so ``check`` and
``bootstrap`` start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from pakman import __version__
from pakman.errors import ConfigError, PakmanError
from pakman.placement import v8_archive
from pakman.publish.deployment import Deployment
from pakman.publish.instellar import InstellarOptions
from pakman.storage.options import DEFAULT_CONCURRENCY, StoreOptions
from pakman.trust import trust_files, trust_for_push

if TYPE_CHECKING:
    from pakman.publish.upload import ProgressFactory, Summary
    from pakman.verify import Report

EPILOG = {
    "check": """examples:
  pakman check
  pakman check --config deploy/instellar.yml""",
    "bootstrap": """examples:
  # In a v8 workflow: everything comes from GITHUB_* and ABUILD_* variables.
  pakman bootstrap
  # Anywhere else:
  pakman bootstrap --workspace . --repository acme/app --version 1.2.3 --build 7 \\
      --home ~ --apk-keys-dir /etc/apk/keys""",
    "keygen": """examples:
  pakman keygen --repository acme/app --output keys/""",
    "verify": """examples:
  pakman verify ~/packages --key ~/.abuild/acme-app.rsa.pub
  pakman verify artifacts/ --key keys/acme-app.rsa.pub --json""",
    "merge": """examples:
  pakman merge ~/packages --output packages.zip
  pakman merge artifacts/*/ --output packages.zip --packages-dir merged/ --key acme-app.rsa.pub""",
    "publish": """examples:
  pakman publish ~/packages --archive packages.zip --store file:///srv/pakman \\
      --repository acme/app --sha "$GITHUB_SHA" --ref "$GITHUB_REF" --key acme-app.rsa.pub
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pakman publish ~/packages \\
      --archive packages.zip --bucket releases --endpoint https://s3.example.com --dry-run""",
    "repo": """examples:
  # Add this build's packages to the repository in your bucket, keeping 5 versions each:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... pakman repo packages/ \\
      --key acme-app.rsa.pub --private-key acme-app.rsa --bucket releases \\
      --endpoint https://s3.example.com
  # What would change, as JSON, for a folder served over HTTP:
  pakman repo packages/ --key acme-app.rsa.pub --private-key acme-app.rsa \\
      --store file:///srv/apk --create-bucket --branch v3.23 --keep 3 --dry-run --json
  # Hosts then add https://s3.example.com/releases/alpine/v3.23/acme to
  # /etc/apk/repositories and acme-app.rsa.pub to /etc/apk/keys/.""",
    "sign": """examples:
  # Build without the key (abuild signs with a throwaway one), then sign with the real key:
  pakman sign ~/packages --private-key acme-app.rsa --key-name acme-app.rsa.pub
  # The key from an environment variable (default $ABUILD_PRIVATE_KEY), the name from
  # --repository or $GITHUB_REPOSITORY, refusing what the throwaway key did not sign:
  ABUILD_PRIVATE_KEY="$(cat acme-app.rsa)" pakman sign ~/packages --repository acme/app \\
      --expect-key ~/.abuild/throwaway.rsa.pub --json""",
    "push": """examples:
  # The v8 deploy step, unchanged (INSTELLAR_* and GITHUB_* variables):
  pakman push --archive packages.zip""",
}


JSON_NOTE = """
--json: every exit prints one JSON object on stdout, error or not:
  {"ok": true|false, ...the command's fields..., "exit_code": N, "errors": ["...", ...]}
  A refusal (bad input, exit 2) has no command fields; errors holds each error line, and
  they are on stderr too. With stdout closed nothing is printed: the exit code is the job's."""
for _name in ("check", "bootstrap", "keygen", "verify", "merge", "publish", "push", "repo", "sign"):
    EPILOG[_name] += "\n" + JSON_NOTE


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _workspace(args: argparse.Namespace) -> Path:
    return Path(args.workspace or _env("GITHUB_WORKSPACE") or ".").resolve()


def _config_path(args: argparse.Namespace) -> Path:
    """``--config``, the one meaning of every command: the instellar.yml to read, a
    relative path taken from the workspace (``--workspace``, else ``$GITHUB_WORKSPACE``,
    else the current folder, where v8's push and bootstrap looked)."""
    if not args.config:
        return _workspace(args) / "instellar.yml"
    if args.workspace or _env("GITHUB_WORKSPACE"):
        return _workspace(args) / str(args.config)
    return Path(args.config)


def _repository(args: argparse.Namespace) -> str:
    repository = args.repository or _env("GITHUB_REPOSITORY")
    if not repository:
        raise ConfigError("--repository: required (or set GITHUB_REPOSITORY), e.g. acme/app")
    return str(repository)


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from pakman import config
    from pakman.pipeline import check_summary

    path = _config_path(args)
    cfg = config.load(path)
    lines = check_summary(cfg, str(path)).splitlines()
    if args.json:
        _result(
            args,
            {"config": str(path), "type": cfg.type, "architectures": list(cfg.architectures)},
        )
    else:
        print(lines[0])
    _warn([line.removeprefix("warning: ") for line in lines[1:]])
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from pakman import bootstrap, render
    from pakman.identity import build_number

    workspace = _workspace(args)
    plan = bootstrap.plan_workspace(
        _config_path(args),
        workspace,
        _repository(args),
        version=args.version,
        build=build_number(args.build if args.build is not None else _env("GITHUB_RUN_NUMBER")),
        output=Path(args.output) if args.output else None,
    )
    _warn(plan.config.warnings)
    output = Path(args.output) if args.output else workspace / plan.identity.apk_dir
    writes = render.targets(plan.files, output)
    private_pem = _env("ABUILD_PRIVATE_KEY")
    trusted = None
    if private_pem:
        from pakman import keys

        # Check the keys before writing anything, so a bad key leaves no half-done tree.
        pair = keys.check_pair(
            private_pem,
            _env("ABUILD_PUBLIC_KEY"),
            private_name="ABUILD_PRIVATE_KEY",
            public_name="ABUILD_PUBLIC_KEY",
        )
        # abuild.conf names the key by this path, read from wherever abuild runs.
        home = Path(os.path.abspath(args.home or _env("HOME") or Path.home()))
        apk_keys = Path(os.path.abspath(args.apk_keys_dir))
        writes |= keys.install_files(pair, home, apk_keys, plan.identity.key_name)
        trusted = keys.trusted_key_path(apk_keys, plan.identity.key_name)
    # Everything or nothing: a folder that cannot be written leaves no half-done tree.
    by_sudo = bootstrap.write(writes, trusted)
    installed = str(home / ".abuild" / plan.identity.key_name) if private_pem else None
    if args.json:
        _result(
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
        _warn(["ABUILD_PRIVATE_KEY is not set: signing key set-up skipped"])
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from pakman import keys
    from pakman.identity import Identity

    identity = Identity(_repository(args))
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
        _result(
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


def cmd_schema(args: argparse.Namespace) -> int:
    from pakman import schema

    sys.stdout.write(schema.text())
    return 0


def _result(args: argparse.Namespace, fields: dict[str, object]) -> None:
    """With --json, the command's fields: main() prints them, with the exit code and the
    error lines, as the one object of every exit."""
    args.result = fields


def _print_report(args: argparse.Namespace, report: Report) -> int:
    _warn([note.removeprefix("warning: ") for note in report.notes])
    if args.json:
        _result(args, report.as_dict())
        if not report.ok:
            args.errors = [f"{problem}" for problem in report.problems]
    else:
        for problem in report.problems:
            print(f"FAIL {problem}")
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.packages} package(s), {report.indexes} index(es): {status}")
    return 0 if report.ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from pakman.verify import verify_root

    trust = trust_files(args.key or ())
    if not trust.keys:
        raise ConfigError("--key: a trusted public key is required to verify")
    return _print_report(args, verify_root(Path(args.directory), trust.public))


def cmd_merge(args: argparse.Namespace) -> int:
    from pakman import pipeline

    merged, digest = pipeline.merge(
        [Path(d) for d in args.artifacts],
        Path(args.output),
        trust_files(args.key or (), skip=args.no_verify),
        packages_dir=Path(args.packages_dir) if args.packages_dir else None,
        log=_log(False),
    )
    if args.json:
        _result(
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


def _log(enabled: bool) -> Callable[[str], None]:
    """Progress lines when ``enabled`` (no progress bar); warnings always."""

    def log(line: str) -> None:
        if enabled or line.startswith("warning:"):
            print(line, file=sys.stderr)

    return log


def _progress_factory() -> ProgressFactory | None:
    """A byte progress bar on a terminal; plain log lines otherwise."""
    if not sys.stderr.isatty():
        return None

    @contextlib.contextmanager
    def bar(total: int) -> Iterator[Callable[[int], None]]:
        from tqdm import tqdm

        # A terminal that reports no size (some CI ptys) would otherwise get no bar at all.
        size = os.get_terminal_size(sys.stderr.fileno())
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            ncols=size.columns or 80,
            nrows=size.lines or 24,
        ) as t:

            def update(done: int) -> None:
                t.update(done)

            yield update

    return bar


def _summarise(args: argparse.Namespace, summary: Summary) -> None:
    if args.json:
        _result(args, summary.as_dict())
    else:
        print(summary.line())
        print(f"archive: {summary.archive_path}")
        print(f"manifest: {summary.manifest}")


GRACE_SECONDS = 10  # past --timeout, for requests under way to fail on their own


def _watchdog(args: argparse.Namespace) -> None:
    """End the process a little after --timeout: a request stuck on a server that trickles
    bytes cannot be interrupted from Python, so the run stops itself (exit 3). A timer
    signal rather than a thread, so the run stays single-threaded until it uploads."""
    import signal

    from pakman.pipeline import check_timeout

    seconds = check_timeout(args.timeout)

    def fire(*_: object) -> None:
        import shutil

        from pakman.merge import SCRATCH

        print(
            f"error: {args.command}: gave up after {seconds:g} s (--timeout);"
            " a re-run resumes where this one stopped",
            file=sys.stderr,
            flush=True,
        )
        for folder in list(SCRATCH):
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds + GRACE_SECONDS)


def _store_options(args: argparse.Namespace) -> StoreOptions:
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


def cmd_publish(args: argparse.Namespace) -> int:
    from pakman import pipeline

    _watchdog(args)
    target = Deployment.resolve(args.repository, args.sha, args.ref, args.build, os.environ)
    store = _store_options(args)
    summary = pipeline.publish(
        Path(args.packages_dir),
        Path(args.archive) if args.archive else None,
        target,
        trust_files(args.key or (), skip=args.no_verify),
        store,
        dry_run=args.dry_run,
        timeout=args.timeout,
        log=_log(args.dry_run or not sys.stderr.isatty()),
        progress_factory=None if args.dry_run else _progress_factory(),
    )
    _summarise(args, summary)
    return 0


def _duration(text: str) -> float:
    """``4h``, ``90m``, ``30s``, ``2d`` or plain seconds."""
    import re

    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a duration such as 4h, 90m or 0 (got {text!r})")
    return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found[2]]


def cmd_repo(args: argparse.Namespace) -> int:
    from pakman import config, pipeline
    from pakman.identity import resolve_alpine

    _watchdog(args)
    stack = None
    config_path = _config_path(args)
    # The config only names the branch: without --config, a checkout may have none.
    if args.branch is None and (args.config or config_path.is_file()):
        stack = config.load(config_path).alpine_version
    try:
        private_pem = Path(args.private_key).read_bytes()
    except OSError as error:
        raise ConfigError(
            f"--private-key: {args.private_key}: cannot read: {error.strerror}"
        ) from None
    store = _store_options(args)
    summary = pipeline.repo(
        [Path(d) for d in args.directories],
        trust_files([args.key]),
        private_pem,
        store,
        branch=resolve_alpine(args.branch, stack, option="--branch"),
        prefix=args.prefix,
        keep=args.keep,
        replace=args.replace,
        dry_run=args.dry_run,
        timeout=args.timeout,
        grace=args.grace,
        log=_log(not sys.stderr.isatty() or args.dry_run),
    )
    if args.json:
        _result(args, summary.as_dict())
    else:
        for line in summary.lines():
            print(line)
    return 0


# --- pakman repo check URL -------------------------------------------------------------


def cmd_repo_check(args: argparse.Namespace) -> int:
    from pakman.repo.check import check

    trust = trust_files(args.key)
    report = check(
        args.url,
        args.arch or ["x86_64"],
        trust.public,
        timeout=args.timeout,
        verify_tls=args.verify_tls,
    )
    if args.json:
        _result(args, report.as_dict())
        args.errors = list(report.problems)
    else:
        for problem in report.problems:
            print(f"problem: {problem}")
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{report.url}: {report.packages} package(s): {status}")
    return 0 if report.ok else 1


def _add_repo_check(add: Callable[..., argparse.ArgumentParser]) -> None:
    """``pakman repo check URL``, parsed as its own command (``repo`` takes folders)."""
    p = add(
        "repo-check",
        cmd_repo_check,
        "pakman repo check URL: read a repository over HTTP(S) as apk does; report every problem.",
    )
    p.prog = "pakman repo check"
    p.add_argument("url", metavar="URL", help="the repository, as in /etc/apk/repositories")
    p.add_argument(
        "--key", action="append", required=True, help="public key the index must verify with"
    )
    p.add_argument("--arch", action="append", help="arch to check (repeatable; default: x86_64)")
    p.add_argument(
        "--no-verify-tls",
        dest="verify_tls",
        action="store_const",
        const=False,
        default=True,
        help="do not verify the repository's TLS certificate",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per read (default: %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def cmd_push(args: argparse.Namespace) -> int:
    from pakman import config, pipeline

    _watchdog(args)
    home = Path(_env("HOME") or Path.home())
    cfg = config.load(_config_path(args))
    target = Deployment.resolve(args.repository, args.sha, args.ref, args.build, os.environ)
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
        log=_log(not sys.stderr.isatty()),
        progress_factory=_progress_factory(),
    )
    if args.json:
        _result(args, pushed.as_dict())
        return 0
    if pushed.summary is not None:
        _summarise(args, pushed.summary)
    print(f"deployment {pushed.deployment}: {pushed.archive_path}")
    if pushed.configuration:
        print(f"configuration {pushed.configuration}")
    return 0


SIGN_KEY_VARIABLE = "ABUILD_PRIVATE_KEY"


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign a packages tree in place with the real key (:func:`pakman.sign.sign_tree`)."""
    from pakman.identity import Identity
    from pakman.sign import sign_tree

    if args.private_key:
        what = f"--private-key: {args.private_key}"
        try:
            private_pem = Path(args.private_key).read_bytes()
        except OSError as error:
            raise ConfigError(f"{what}: cannot read: {error.strerror}") from None
    else:
        what = f"${args.private_key_env}"
        value = _env(args.private_key_env)
        if not value:
            raise ConfigError(
                f"--private-key: required: a key file, or the key in ${args.private_key_env}"
            )
        private_pem = value.encode()
    key_name = args.key_name
    if not key_name:
        if not (args.repository or _env("GITHUB_REPOSITORY")):
            raise ConfigError(
                "--key-name: required (e.g. acme-app.rsa.pub), or --repository or"
                " $GITHUB_REPOSITORY to name it <org>-<slug>.rsa.pub"
            )
        key_name = f"{Identity(_repository(args)).key_name}.pub"
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
        _result(args, report.as_dict())
    else:
        print(report.line())
    return 0


def _add_sign(add: Callable[..., argparse.ArgumentParser]) -> None:
    from pakman.sign import DEFAULT_ALGORITHM, PREFIXES

    p = add(
        "sign",
        cmd_sign,
        "Sign (or re-sign) every package and index of a tree with the real key, in place.",
    )
    p.add_argument("directory", help="a packages tree (<repo>/<arch>/...)")
    p.add_argument("--private-key", metavar="FILE", help="the private key file")
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
    p.add_argument("--repository", help="owner/name (default: $GITHUB_REPOSITORY)")
    p.add_argument(
        "--algorithm",
        choices=tuple(PREFIXES),
        default=DEFAULT_ALGORITHM,
        help="RSA signature digest (default: %(default)s; sha1 is abuild's)",
    )
    p.add_argument(
        "--expect-key",
        action="append",
        metavar="PUB",
        help="refuse a file not already signed by this key (or the signing key); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")


# Each option is declared once, here, by the group that owns it; a command takes the groups
# it needs. The second spelling of an option is the Dagger module's name for it.


def _add_config(parser: argparse.ArgumentParser) -> None:
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


def _add_repository(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", help="owner/name (default: $GITHUB_REPOSITORY)")


def _add_build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build",
        "--build-number",
        dest="build",
        help="build number, the pkgrel (default: $GITHUB_RUN_NUMBER or 0)",
    )


def _add_deployment(parser: argparse.ArgumentParser) -> None:
    _add_repository(parser)
    parser.add_argument("--sha", help="commit sha (default: $WORKFLOW_SHA or $GITHUB_SHA)")
    parser.add_argument("--ref", help="git ref (default: $WORKFLOW_REF or $GITHUB_REF)")
    _add_build(parser)


def _add_key(parser: argparse.ArgumentParser, text: str, *, many: bool = True) -> None:
    parser.add_argument(
        "--key",
        "--public-key",
        dest="key",
        action="append" if many else "store",
        required=not many,
        help=text,
    )


def _add_no_verify(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--no-verify", "--skip-verify", dest="no_verify", action="store_true", help=text
    )


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bucket", help="S3 bucket; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    )
    parser.add_argument("--store", help="file:///path for a local store, or s3://bucket")
    parser.add_argument(
        "--endpoint", help="S3-compatible endpoint URL (default: AWS or $AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--region", help="S3 region (default: $AWS_REGION or us-east-1)")
    parser.add_argument("--addressing-style", default="auto", choices=("auto", "path", "virtual"))
    parser.add_argument(
        "--no-verify-tls",
        dest="verify_tls",
        action="store_const",
        const=False,
        default=True,
        help="do not verify the endpoint's TLS certificate (the module's --verify-tls=false)",
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


def _boolean(text: str) -> bool:
    """A boolean as the Dagger module spells it: --verify-tls=false."""
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"must be true or false (got {text!r})")
    return text.lower() == "true"


def _add_concurrency(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=8, help="parallel uploads (default: %(default)s)"
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    from pakman.pipeline import DEFAULT_TIMEOUT

    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="give up after this long, exit 3; a re-run resumes (default: %(default)g, 30 min)",
    )


def _add_dry_run(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--dry-run", action="store_true", help=text)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on every exit (see below)"
    )


class _Refused(Exception):
    """An argument error: argparse's own message, reported as one error line."""


class _Parser(argparse.ArgumentParser):
    """An argument error is one ``error:`` line (and, with --json, one object), exit 2,
    as every other refusal; argparse would print its usage and exit by itself."""

    def error(self, message: str) -> NoReturn:
        raise _Refused(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pakman",
        description="Build signed Alpine packages from instellar.yml and ship them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'pakman <command> --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"pakman {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        text: str,
        aliases: Sequence[str] = (),
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            aliases=aliases,
            help=text,
            description=text,
            epilog=EPILOG.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    p = add("check", cmd_check, "Validate instellar.yml and report every problem.")
    _add_config(p)
    _add_json(p)

    p = add(
        "bootstrap",
        cmd_bootstrap,
        "Render the APKBUILD and service files; install the signing key.",
    )
    _add_config(p)
    _add_repository(p)
    p.add_argument("--version", help="package version (default: from git describe --tags)")
    _add_build(p)
    p.add_argument("--home", help="where .abuild/ goes (default: $HOME)")
    p.add_argument(
        "--apk-keys-dir", default="/etc/apk/keys", help="trusted apk keys (default: %(default)s)"
    )
    p.add_argument("--output", help="output folder (default: <workspace>/.apk/<org>/<name>)")
    _add_json(p)

    p = add("keygen", cmd_keygen, "Make a 4096-bit RSA signing key pair named <org>-<slug>.rsa.")
    _add_repository(p)
    p.add_argument("--output", default=".", help="folder for the key files (default: .)")
    p.add_argument("--bits", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="replace a key pair already there")
    _add_json(p)

    add("schema", cmd_schema, "Print the JSON Schema of instellar.yml (for editors and linters).")

    p = add(
        "verify", cmd_verify, "Check every package and index: signatures, datahash, index entries."
    )
    p.add_argument("directory", help="a packages tree (<repo>/<arch>/...)")
    _add_key(p, "trusted public key file (repeatable)")
    _add_json(p)

    p = add(
        "merge", cmd_merge, "Merge per-arch outputs into one tree and a deterministic packages.zip."
    )
    p.add_argument("artifacts", nargs="+", help="abuild ~/packages folders or downloaded artifacts")
    p.add_argument(
        "--output", default="packages.zip", help="the zip to write (default: %(default)s)"
    )
    p.add_argument("--packages-dir", help="also write the merged tree here")
    _add_key(p, "trusted public key file (repeatable)")
    _add_no_verify(p, "skip verification before zipping")
    _add_json(p)

    p = add(
        "publish", cmd_publish, "Upload packages and the archive to S3 or a folder; manifest last."
    )
    p.add_argument("packages_dir", help="the merged packages tree (<repo>/<arch>/<file>)")
    p.add_argument(
        "--archive", help="the zip from 'pakman merge' (default: made from the packages tree)"
    )
    _add_store(p)
    _add_deployment(p)
    _add_key(p, "trusted public key: verify before uploading (repeatable)")
    _add_no_verify(p, "upload without verifying")
    _add_concurrency(p)
    _add_timeout(p)
    _add_dry_run(p, "print the plan; read storage, write nothing")
    _add_json(p)

    p = add(
        "repo",
        cmd_repo,
        "Add verified packages to a signed apk repository in a bucket or folder.",
    )
    p.add_argument("directories", nargs="+", metavar="DIR", help="packages trees (<org>/<arch>/)")
    _add_key(p, "the public key: packages are verified with it", many=False)
    p.add_argument(
        "--private-key", required=True, help="its private key: signs the index (never copied)"
    )
    _add_store(p)
    p.add_argument(
        "--branch",
        "--alpine",
        dest="branch",
        help="Alpine branch, e.g. v3.23 (default: the config's stack, else v3.23)",
    )
    _add_config(p)
    p.add_argument("--prefix", default="alpine", help="folder of the repository (default: alpine)")
    p.add_argument(
        "--keep", type=int, default=5, help="newest versions kept per package (default: 5)"
    )
    p.add_argument(
        "--replace", action="store_true", help="replace a version already there with other bytes"
    )
    _add_dry_run(p, "print what would change, write nothing")
    p.add_argument(
        "--grace",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="how long a package stays downloadable after it leaves the index,"
        " e.g. 4h, 90m, 0 (default: 4h, the longest apk keeps an index)",
    )
    _add_json(p)
    _add_timeout(p)

    _add_sign(add)
    _add_repo_check(add)

    p = add(
        "push",
        cmd_push,
        "v8's push: upload to Instellar-provided storage and register the deployment.",
        aliases=["deploy"],  # the Dagger module's name
    )
    p.add_argument(
        "--instellar-endpoint",
        help="the deployment API (default: $INSTELLAR_ENDPOINT or https://opsmaru.com)",
    )
    p.add_argument(
        "--archive",
        default="packages.zip",
        help="the zip (default: %(default)s, else in $HOME as v8 looked, else made from the tree)",
    )
    _add_config(p)
    _add_concurrency(p)
    _add_timeout(p)
    p.add_argument("--packages-dir", help="packages tree (default: $HOME/packages, as v8)")
    _add_deployment(p)
    _add_key(p, "trusted public key (default: $ABUILD_PUBLIC_KEY, else ~/.abuild/<key>.pub)")
    _add_no_verify(p, "upload without verifying")
    _add_json(p)
    return parser


# Environment variables whose values must never be printed, whatever goes wrong.
SECRET_VARIABLES = (
    "ABUILD_PRIVATE_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "INSTELLAR_AUTH_TOKEN",
    "INSTELLAR_PACKAGE_TOKEN",
)


def _last_resort(error: BaseException) -> tuple[str, int]:
    """One line for an error no command expected: OSError is a local problem (exit 2)."""
    from pakman.errors import redact
    from pakman.recipe import PEM_BLOCK

    secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        text, code = f"{where}{error.strerror or error.__class__.__name__}", 2
    else:
        text, code = f"unexpected {error.__class__.__name__}: {error}", 1
    text = PEM_BLOCK.sub("[key material removed]", text)
    line = redact(" ".join(text.split()), secrets, limit=300)
    return f"error: {line} (PAKMAN_DEBUG=1 shows a traceback)", code


def _one_line(text: str) -> str:
    """A problem as one line: a newline or other control character inside a value (a
    name, a path) is shown escaped, never split over lines."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; every failure is one line and an exit code.

    With ``--json`` every exit prints one object on stdout: the command's fields (none
    on a refusal), ``exit_code`` and ``errors``, its error lines ([] on success).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    given = list(argv)
    if given[:2] == ["repo", "check"]:
        given = ["repo-check", *given[2:]]
    try:
        args = parser.parse_args(given)
    except _Refused as refused:
        line = _one_line(str(refused))
        print(f"error: {line}", file=sys.stderr)
        if "--json" in given:
            print(json.dumps({"ok": False, "exit_code": 2, "errors": [line]}, indent=2))
        return 2
    errors: list[str] = []
    try:
        code = int(args.func(args))
    except PakmanError as error:
        errors = [_one_line(line.removeprefix("error: ")) for line in error.problems]
        code = error.exit_code
    except KeyboardInterrupt:
        errors, code = ["interrupted"], 130
    except Exception as error:
        if os.environ.get("PAKMAN_DEBUG") == "1":
            raise
        line, code = _last_resort(error)
        errors = [_one_line(line.removeprefix("error: "))]
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if getattr(args, "json", False):
        fields = getattr(args, "result", {})
        reported = getattr(args, "errors", errors) if code else []
        result = {"ok": code == 0, **fields, "exit_code": code, "errors": reported or errors}
        print(json.dumps(result, indent=2))
    return code


class _SafeStream(io.TextIOBase):
    """A text stream whose writes never fail the job: once its reader has gone (a closed
    stdout, a pipe whose reader exited, a full disk), it stops writing and the job goes
    on, to exit with its own code."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self.broken = stream is None

    def write(self, text: str) -> int:
        if not self.broken and self._stream is not None:
            try:
                self._stream.write(text)
                if "\n" in text:
                    self._stream.flush()  # a line the reader sees now, or learn it is gone
            except (OSError, ValueError):
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken and self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        if self._stream is None:
            raise OSError("no stream")
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"


def run() -> NoReturn:
    """The ``pakman`` command: :func:`main` over streams whose failures never stop the job,
    then exit without the interpreter's teardown.

    Everything pakman writes is closed (and fsynced) by then; tearing down botocore's
    object graph would only add about 50 ms to every run.
    """
    import signal

    def terminated(*_: object) -> NoReturn:
        # Unwinds like an interrupt, so temporary files (a made archive) are removed.
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, terminated)
    sys.stdout = _SafeStream(sys.stdout)
    sys.stderr = _SafeStream(sys.stderr)
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
