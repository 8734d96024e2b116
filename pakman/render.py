"""Render the abuild tree: a pure function from config + identity to files."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import NamedTuple

import jinja2

from pakman.config import Command, Config, Service
from pakman.errors import ConfigError
from pakman.identity import Identity

SERVICE_FILES = ("initd", "run", "finish", "log", "environment", "env-exec")


class Layout(NamedTuple):
    """Where the build folder sits in the workspace, as the APKBUILD's snapshot sees it.

    ``root`` is the workspace relative to the build folder; ``output`` is the build
    folder's path in the workspace when it is not under ``.apk/`` (the snapshot leaves
    it out as it leaves ``.apk/`` out).
    """

    root: str = "../../.."  # from .apk/<org>/<name>/
    output: str = ""


DEFAULT_LAYOUT = Layout()


class RenderedFile(NamedTuple):
    """A file's text and its permission bits."""

    text: str
    mode: int


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pakman", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - shell scripts, not HTML
    )
    env.filters["sq"] = shlex.quote
    return env


def _invocation(run_name: str, item: Command | Service) -> str:
    directory = item.path or f"/var/lib/{run_name}/bin"
    call = item.call if isinstance(item, Command) else item.start_call
    return f"{directory}/{item.binary} {call}".rstrip()


_SETCAP = re.compile(r"(^|[\s;&|(`])setcap\s")


def abuild_options(config: Config) -> tuple[str, ...]:
    """abuild ``options``: never check; trace deps only on request; strip unless disabled;
    ``setcap`` when the build or package step gives a binary capabilities, or abuild
    refuses the package ("Found binary with extra capabilities")."""
    options = ["!check"]
    if not config.dependencies.trace:
        options.append("!tracedeps")
    if not config.build.strip_binary:
        options.append("!strip")
    if any(_SETCAP.search(step or "") for step in (config.build.command, config.package)):
        options.append("setcap")
    return tuple(options)


def check_identity(config: Config, identity: Identity) -> None:
    """Reject configs whose service files would not be found under the package's name."""
    run = config.run
    if config.type == "default" and config.source is None and run and run.name != identity.slug:
        raise ConfigError(
            f"instellar.yml: run.name: must equal the package name {identity.slug!r}"
            f" derived from {identity.repository!r}, or the APKBUILD's service files"
            f" are missing (got {run.name!r})"
        )


# The supervisor pakman's service directory runs under: s6, and execline, which OpenRC's
# s6-svscan service runs its scan directory with (from OpenRC 0.63 on).
S6_DEPENDS = ("s6", "execline")


def _dependency_name(dependency: str) -> str:
    return re.split(r"[<>=~]", dependency, maxsplit=1)[0]


def runtime_depends(config: Config, identity: Identity) -> tuple[str, ...]:
    """``depends``: the config's, plus the init script's subpackage when there is one,
    plus s6 and execline when the package runs a service under s6 (whatever its
    ``package:``); none listed twice.

    abuild gives ``<name>-openrc`` an install_if on openrc, so a host without openrc
    would otherwise install the service without its init script.
    """
    depends = config.runtime_dependencies
    wanted = [f"{identity.slug}-openrc"] if config.installs_init_script else []
    if config.installs_s6_service:
        wanted += S6_DEPENDS
    named = {_dependency_name(dependency) for dependency in depends}
    return depends + tuple(name for name in wanted if name not in named)


def default_maintainer(identity: Identity) -> str:
    """abuild warns on every build without a maintainer; GitHub's no-reply address is one."""
    return f"{identity.owner} <{identity.owner}@users.noreply.github.com>"


def render(
    config: Config, identity: Identity, layout: Layout = DEFAULT_LAYOUT
) -> dict[str, RenderedFile]:
    """Render every build file, keyed by its path relative to the build folder
    (``.apk/<org>/<name>/`` unless ``layout`` says otherwise)."""
    check_identity(config, identity)
    env = _environment()
    slug = identity.slug
    hooks = dict(config.hooks)

    def template(template_name: str, **context: object) -> str:
        return env.get_template(f"{template_name}.j2").render(
            config=config, identity=identity, **context
        )

    if config.source is not None:
        sources = [line.strip() for line in config.source.splitlines() if line.strip()]
    elif config.type == "default":
        sources = [f"$pkgname.{name}" for name in SERVICE_FILES]
    else:
        sources = []
    # pakman's own install scripts, each followed by the config's hook of the same name.
    own = ["pre-install"]
    if config.installs_s6_service and config.run is not None:
        own.append("pre-deinstall")
    install = [*own, *(name for name in hooks if name not in own)]

    files = {
        "APKBUILD": RenderedFile(
            template(
                "APKBUILD",
                options=abuild_options(config),
                install=install,
                sources=sources,
                depends=runtime_depends(config, identity),
                maintainer=config.maintainer or default_maintainer(identity),
                layout=layout,
            ),
            0o644,
        ),
        f"{slug}.pre-install": RenderedFile(
            template("pre-install", hook=hooks.get("pre-install")), 0o755
        ),
    }
    if "pre-deinstall" in own:
        files[f"{slug}.pre-deinstall"] = RenderedFile(
            template("pre-deinstall", run=config.run, hook=hooks.get("pre-deinstall")), 0o755
        )
    for name, text in hooks.items():
        if name not in own:
            files[f"{slug}.{name}"] = RenderedFile(template("hook", name=name, text=text), 0o755)

    if config.type in ("static", "custom"):
        return files

    if config.run is not None:
        run = config.run

        def invocation(item: Command | Service) -> str:
            return _invocation(run.name, item)

        for name in ("initd", "run", "finish", "log"):
            files[f"{run.name}.{name}"] = RenderedFile(
                template(name, run=run, invocation=invocation), 0o755
            )
    files[f"{slug}.environment"] = RenderedFile(template("environment"), 0o755)
    files[f"{slug}.env-exec"] = RenderedFile(template("env-exec"), 0o755)
    return files


def targets(files: dict[str, RenderedFile], directory: Path) -> dict[Path, tuple[bytes, int]]:
    """The rendered files as paths under ``directory``, with their bytes and modes."""
    return {directory / name: (text.encode(), mode) for name, (text, mode) in files.items()}


def write(files: dict[str, RenderedFile], directory: Path) -> list[Path]:
    """Write rendered files into ``directory``: every one, or none of them."""
    from pakman.files import write_all

    return write_all(targets(files, directory))
