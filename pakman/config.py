"""instellar.yml: the typed, immutable config model and its validation.

:func:`load` parses and validates once and returns a frozen :class:`Config`.
Every problem is collected and reported together, one line each, as
``instellar.yml: <dotted.path>: <what is wrong> (got <value>)``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import reprlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pakman.errors import ConfigError
from pakman.tree import ARCHITECTURES

PackageType = Literal["default", "static", "custom"]

HOOKS = (
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "pre-deinstall",
    "post-deinstall",
)
PASSTHROUGH = ("kits", "sizes", "plans", "page")

# Every pattern is used with fullmatch: `$` would let a trailing newline into a script.
# Alpine package-name rules, lowercase: these names end up in file paths and scripts.
SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]*")
# An apk dependency atom: [!][prefix:]name[op version][@tag]
DEPENDENCY = re.compile(
    r"!?(?:[a-z0-9][a-z0-9_.-]*:)?[A-Za-z0-9][A-Za-z0-9._+-]*"
    r"(?:(?:<=|>=|=~|><|<|>|=|~)[0-9][A-Za-z0-9._~-]*)?(?:@[A-Za-z0-9_-]+)?"
)
# Destinations are copied with an unquoted glob, so only glob-safe characters are allowed.
DESTINATION = re.compile(r"[A-Za-z0-9._*?@+,=:/\[\]-]+")
# Command names become OpenRC function names.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
OPENRC_RESERVED = frozenset(
    {"start", "stop", "restart", "status", "describe", "zap", "depend", "reload"}
)
STACK = re.compile(r"alpine/(?P<version>.+)")
# An SPDX license expression (abuild's check_license): identifiers, AND/OR/WITH, parentheses.
LICENSE = re.compile(r"[A-Za-z0-9.+()-]+(?: [A-Za-z0-9.+()-]+)*")
# "Name <address>" as abuild's check_maintainer wants it; rendered inside double quotes.
MAINTAINER = re.compile(
    r"[^\x00-\x1f\x7f\"$`\\<> ](?:[^\x00-\x1f\x7f\"$`\\<>]*[^\x00-\x1f\x7f\"$`\\<> ])?"
    r" <[^\s\"$`\\<>@]+@[^\s\"$`\\<>@]+\.[^\s\"$`\\<>@]+>"
)
DEFAULT_LICENSE = "MIT"
# stack: the forms identity.alpine_branch normalises (3.20, v3.20, edge, latest-stable).
STACK_FORM = re.compile(r"alpine/(?:edge|latest-stable|v?[0-9]+\.[0-9]+)")
ARCHITECTURE = re.compile("|".join(ARCHITECTURES))
MAX_FIELD_LENGTH = 200  # license and maintainer
# The declaration's forms of rules the readers below check step by step (with a message
# each): the JSON Schema can only say "does not match", but must refuse the same values.
ABSOLUTE_PATH = re.compile(r"(?!.*/\.\.(?:/|$))/[A-Za-z0-9._/+@-]*")
COMMAND_NAME = re.compile(
    rf"(?!(?:{'|'.join(sorted(OPENRC_RESERVED))})$|start_|stop_)[a-z][a-z0-9_]*"
)
DESTINATION_FORM = re.compile(rf"(?!/)(?!(?:.*/)?\.\.(?:/|$)){DESTINATION.pattern}")
# source= is rendered inside double quotes in the APKBUILD: these would break out.
QUOTE_BREAK = re.compile(r'["`\\]|\$\(')
SOURCE_TEXT = re.compile(rf"(?![\s\S]*(?:{QUOTE_BREAK.pattern}))[\s\S]*")
NOT_BLANK = re.compile(r"[\s\S]*\S[\s\S]*")
ONE_LINE = re.compile(r"\s*[^\n]*\s*")


@dataclass(frozen=True)
class Key:
    """What instellar.yml allows at one place. :data:`INSTELLAR` is the one declaration
    of every key: the unknown-key check walks it and :mod:`pakman.schema` turns it into
    the JSON Schema, so the two cannot drift apart.

    ``kind`` is ``text`` (a string or number, as YAML may read ``1.2``), ``string``,
    ``boolean``, ``list`` or ``mapping``. A mapping with ``keys=None`` takes any keys.
    """

    kind: Literal["text", "string", "boolean", "list", "mapping"]
    doc: str = ""
    pattern: re.Pattern[str] | None = None  # used with fullmatch
    choices: tuple[str, ...] = ()
    keys: Mapping[str, Key] | None = None
    items: Key | None = None
    required: tuple[str, ...] = ()
    nullable: bool = True  # an empty value (``key:``) counts as absent
    min_items: int = 0
    max_length: int | None = None
    unknown: str = "unknown key"  # what an unknown key below this mapping is called


_DEPENDENCY_LIST = Key(
    "list",
    "apk dependency atoms: name, name>=1.2, so:lib, cmd:tool, !name",
    items=Key("string", pattern=DEPENDENCY),
)
_RUN_ENTRY = {
    "name": Key("text", "a lowercase name", pattern=SAFE_NAME),
    "binary": Key("text", "the executable's name", pattern=SAFE_NAME),
    "path": Key(
        "text", "folder of the binary (default: /var/lib/<run.name>/bin)", pattern=ABSOLUTE_PATH
    ),
}
INSTELLAR = Key(
    "mapping",
    "instellar.yml: how PAKman builds, packages and runs an application",
    required=("dependencies", "build"),
    keys={
        "type": Key("text", "what the package is", choices=("default", "static", "custom")),
        "stack": Key("text", "alpine/<version>: the Alpine branch to build on", pattern=STACK_FORM),
        "architectures": Key(
            "list",
            "Alpine architectures to build (default: x86_64)",
            items=Key("string", pattern=ARCHITECTURE),
            min_items=1,
        ),
        "dependencies": Key(
            "mapping",
            "apk packages to build and to run with",
            keys={
                "trace": Key("boolean", "let abuild trace shared-library dependencies"),
                "build": _DEPENDENCY_LIST,
                "runtime": _DEPENDENCY_LIST,
            },
        ),
        "build": Key(
            "mapping",
            "how to build",
            required=("command",),
            keys={
                "command": Key(
                    "text", "shell commands run in the source folder", pattern=NOT_BLANK
                ),
                "destinations": Key(
                    "list",
                    "what to package, relative to the source folder (globs)",
                    items=Key("string", pattern=DESTINATION_FORM),
                ),
                "strip_binary": Key("boolean", "strip binaries (default: true)"),
            },
        ),
        "source": Key(
            "text", "APKBUILD source= text instead of the service files", pattern=SOURCE_TEXT
        ),
        "package": Key("text", "APKBUILD package() body instead of the default"),
        "run": Key(
            "mapping",
            "the service: OpenRC script, s6 service modes, extra commands",
            required=("name",),
            keys={
                "name": Key("text", "the service's name", pattern=SAFE_NAME, nullable=False),
                "commands": Key(
                    "list",
                    "OpenRC extra commands (rc-service <name> <command>)",
                    items=Key(
                        "mapping",
                        required=("name", "binary"),
                        keys={
                            **_RUN_ENTRY,
                            "name": Key("text", "an OpenRC command name", pattern=COMMAND_NAME),
                            "call": Key("text", "its arguments, one line", pattern=ONE_LINE),
                        },
                    ),
                ),
                "services": Key(
                    "list",
                    "s6 service modes; the first is the default",
                    items=Key(
                        "mapping",
                        required=("name", "binary"),
                        keys={
                            **_RUN_ENTRY,
                            "start": Key(
                                "mapping",
                                keys={
                                    "call": Key("text", "its arguments, one line", pattern=ONE_LINE)
                                },
                            ),
                            "stop": Key(
                                "mapping",
                                "kept as v8 wrote it",
                                keys={
                                    "call": Key("text"),
                                    "kill": Key("boolean"),
                                    "pid_path": Key("text"),
                                },
                            ),
                        },
                    ),
                ),
            },
        ),
        "hook": Key(
            "mapping",
            "apk install scripts (shell text)",
            keys={name: Key("string", nullable=False) for name in HOOKS},
            unknown=f"is not an apk install script ({', '.join(HOOKS)})",
        ),
        "license": Key(
            "text",
            "an SPDX license expression (default: MIT)",
            pattern=LICENSE,
            max_length=MAX_FIELD_LENGTH,
        ),
        "maintainer": Key(
            "text",
            "Name <address> (default: from the repository owner)",
            pattern=MAINTAINER,
            max_length=MAX_FIELD_LENGTH,
        ),
        **{
            key: Key(
                "list",
                "passed to the deployment API as is",
                items=Key("mapping", required=("name",), keys=None),
            )
            for key in ("kits", "sizes", "plans")
        },
        "page": Key("mapping", "passed to the deployment API as is", keys=None),
    },
)
# Keys of v8 before 7 that v8 itself no longer read: each a one-line way forward.
MIGRATIONS = {
    "run.process": "a v8 key from before v7; write each process as a run.services entry"
    " ({name, binary, start: {call}})",
    "run.command": "a v8 key from before v7; write each variation as a run.commands entry"
    " ({name, binary, call})",
    "hooks": "write hook: (singular) with the apk script names as keys",
}


@dataclass(frozen=True)
class Dependencies:
    """``dependencies``: apk atoms needed to build and to run."""

    trace: bool = False
    build: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()


@dataclass(frozen=True)
class Build:
    """``build``: the shell command and what it leaves behind to package."""

    command: str
    destinations: tuple[str, ...] = ()
    strip_binary: bool = True


@dataclass(frozen=True)
class Command:
    """A ``run.commands`` entry: an OpenRC extra command."""

    name: str
    binary: str
    call: str = ""
    path: str | None = None


@dataclass(frozen=True)
class Service:
    """A ``run.services`` entry: one s6 service mode."""

    name: str
    binary: str
    start_call: str = ""
    path: str | None = None
    stop: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """``run``: the OpenRC/s6 service and its commands."""

    name: str
    commands: tuple[Command, ...] = ()
    services: tuple[Service, ...] = ()


@dataclass(frozen=True)
class Config:
    """A validated instellar.yml."""

    dependencies: Dependencies
    build: Build
    type: PackageType = "default"
    stack: str | None = None
    architectures: tuple[str, ...] = ("x86_64",)
    source: str | None = None
    package: str | None = None
    run: Run | None = None
    hooks: tuple[tuple[str, str], ...] = ()
    license: str = DEFAULT_LICENSE
    maintainer: str | None = None  # None: derived from the repository owner at render time
    # kits, sizes, plans, page: passed untouched to the deployment API.
    deployment: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def alpine_version(self) -> str | None:
        """The Alpine version named by ``stack: alpine/<version>``, if any."""
        if self.stack is None:
            return None
        match = STACK.fullmatch(self.stack)
        return match["version"] if match else None

    @property
    def installs_init_script(self) -> bool:
        """Whether package() installs an OpenRC script, so ``<name>-openrc`` has content.

        The default type installs one; a config's own ``package:`` opts in by installing
        into /etc/init.d.
        """
        if self.package is not None:
            return "etc/init.d" in self.package
        return self.type == "default"

    @property
    def installs_s6_service(self) -> bool:
        """Whether the package runs a service under s6: a default-type package installs
        pakman's init script, which links its service directory into s6-svscan's tree,
        whether pakman's package() installs it or the config's own ``package:`` does."""
        return self.type == "default" and self.installs_init_script

    @property
    def runtime_dependencies(self) -> tuple[str, ...]:
        """Runtime dependencies as v8 computes them: static sites also need nginx."""
        extra = ("nginx",) if self.type == "static" else ()
        return self.dependencies.runtime + extra


# Never in a value that reaches a script: control characters (but the newline and tab of a
# multi-line step), a carriage return or NUL among them, and Unicode's line separators.
UNSAFE_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 40, 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 4


def _show(value: Any) -> str:
    """A short repr: bounded in depth and length before it is built, not cut after."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Walks the raw YAML tree, collecting every problem instead of stopping at the first."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def fail(self, path: str, what: str, value: Any = ...) -> None:
        got = "" if value is ... else f" (got {_show(value)})"
        self.problems.append(f"{self.filename}: {path}: {what}{got}")

    def mapping(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(path, "must be a mapping", value)
            return None
        return value

    def string(
        self, data: Mapping[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, "must be a string", value)
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, "must be a finite number", value)  # YAML's .inf and .nan
            return None
        if isinstance(value, str) and UNSAFE_CHARACTERS.search(value):
            self.fail(path, "must not hold control characters or line separators", value)
            return None
        return str(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(path, "must be true or false", value)
            return default
        return value

    def items(self, data: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, "must be a list", value)
            return []
        return value

    def strings(
        self, data: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str], what: str
    ) -> tuple[str, ...]:
        result = []
        for index, item in enumerate(self.items(data, key, path)):
            if not isinstance(item, str) or not pattern.fullmatch(item):
                self.fail(f"{path}[{index}]", what, item)
            else:
                result.append(item)
        return tuple(result)

    def name(self, data: Mapping[str, Any], key: str, path: str) -> str:
        value = self.string(data, key, path, required=True)
        if value is not None and not SAFE_NAME.fullmatch(value):
            self.fail(path, "must be a lowercase name of a-z, 0-9, '.', '_', '+', '-'", value)
        return value or ""

    def absolute_path(self, data: Mapping[str, Any], key: str, path: str) -> str | None:
        value = self.string(data, key, path)
        if value is None:
            return None
        if not ABSOLUTE_PATH.fullmatch(value):
            self.fail(path, "must be an absolute path without '..' or shell characters", value)
            return None
        return value.rstrip("/") or "/"

    def one_line(self, data: Mapping[str, Any], key: str, path: str) -> str:
        value = self.string(data, key, path) or ""
        if "\n" in value.strip():
            self.fail(path, "must be a single line", value)
        return value.strip()


def _dependencies(r: _Reader, raw: Mapping[str, Any]) -> Dependencies:
    if "dependencies" not in raw or raw["dependencies"] is None:
        r.fail("dependencies", "is required")
        return Dependencies()
    deps = r.mapping(raw, "dependencies", "dependencies") or {}
    what = "is not an apk dependency (name, name>=1.2, so:lib, cmd:tool, !name)"
    return Dependencies(
        trace=r.boolean(deps, "trace", "dependencies.trace", False),
        build=r.strings(deps, "build", "dependencies.build", DEPENDENCY, what),
        runtime=r.strings(deps, "runtime", "dependencies.runtime", DEPENDENCY, what),
    )


def _build(r: _Reader, raw: Mapping[str, Any]) -> Build:
    if raw.get("build") is None:
        r.fail("build.command", "is required")
        return Build(command="")
    build = r.mapping(raw, "build", "build") or {}
    command = r.string(build, "command", "build.command", required=True)
    if command is not None and not command.strip():
        r.fail("build.command", "must not be empty", command)
    destinations = []
    for index, item in enumerate(r.items(build, "destinations", "build.destinations")):
        path = f"build.destinations[{index}]"
        if not isinstance(item, str) or not item:
            r.fail(path, "must be a non-empty string", item)
        elif item.startswith("/"):
            r.fail(path, "must be relative to the build directory", item)
        elif ".." in item.split("/"):
            r.fail(path, "must not escape the build directory with '..'", item)
        elif not DESTINATION.fullmatch(item):
            r.fail(path, "must not contain spaces, quotes or shell characters", item)
        else:
            destinations.append(item)
    return Build(
        command=command or "",
        destinations=tuple(destinations),
        strip_binary=r.boolean(build, "strip_binary", "build.strip_binary", True),
    )


def _run(r: _Reader, raw: Mapping[str, Any], package_type: str) -> Run | None:
    run = r.mapping(raw, "run", "run")
    if run is None:
        if package_type == "default" and raw.get("run") is None:
            r.fail("run", "is required for the default type (a run.name and at least one service)")
        return None
    commands = []
    for index, item in enumerate(r.items(run, "commands", "run.commands")):
        path = f"run.commands[{index}]"
        if not isinstance(item, Mapping):
            r.fail(path, "must be a mapping", item)
            continue
        name = r.name(item, "name", f"{path}.name")
        if name and SAFE_NAME.fullmatch(name):
            if not IDENTIFIER.fullmatch(name):
                r.fail(f"{path}.name", "must be a shell identifier (a-z, 0-9, _)", name)
            elif name in OPENRC_RESERVED or name.startswith(("start_", "stop_")):
                r.fail(f"{path}.name", "clashes with an OpenRC built-in command", name)
        commands.append(
            Command(
                name=name,
                binary=r.name(item, "binary", f"{path}.binary"),
                path=r.absolute_path(item, "path", f"{path}.path"),
                call=r.one_line(item, "call", f"{path}.call"),
            )
        )
    services = []
    for index, item in enumerate(r.items(run, "services", "run.services")):
        path = f"run.services[{index}]"
        if not isinstance(item, Mapping):
            r.fail(path, "must be a mapping", item)
            continue
        start = r.mapping(item, "start", f"{path}.start") or {}
        stop = r.mapping(item, "stop", f"{path}.stop") or {}
        r.boolean(stop, "kill", f"{path}.stop.kill", False)
        r.string(stop, "pid_path", f"{path}.stop.pid_path")
        r.string(stop, "call", f"{path}.stop.call")
        services.append(
            Service(
                name=r.name(item, "name", f"{path}.name"),
                binary=r.name(item, "binary", f"{path}.binary"),
                path=r.absolute_path(item, "path", f"{path}.path"),
                start_call=r.one_line(start, "call", f"{path}.start.call"),
                stop=dict(stop),
            )
        )
    if package_type == "default" and not services and not run.get("services"):
        r.fail("run.services", "needs at least one service for the default type")
    _unique(r, "run.commands", [c.name for c in commands])
    _unique(r, "run.services", [s.name for s in services])
    return Run(
        name=r.name(run, "name", "run.name"), commands=tuple(commands), services=tuple(services)
    )


def _unique(r: _Reader, path: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            r.fail(path, "names must be unique", name)
        seen.add(name)


def _hooks(r: _Reader, raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    hooks = r.mapping(raw, "hook", "hook") or {}
    result = []
    for name, text in hooks.items():
        if name not in HOOKS:
            continue  # reported by _unknown_keys
        if not isinstance(text, str):
            r.fail(f"hook.{name}", "must be shell text", text)
        else:
            result.append((name, text))
    # Sorted, as v8's map iteration was: the output must not depend on YAML key order.
    return tuple(sorted(result))


def _architectures(r: _Reader, raw: Mapping[str, Any]) -> tuple[str, ...]:
    if raw.get("architectures") is None:
        return ("x86_64",)
    found = r.strings(
        raw,
        "architectures",
        "architectures",
        re.compile("|".join(ARCHITECTURES)),
        f"is not an Alpine architecture ({', '.join(ARCHITECTURES)})",
    )
    if not found and not r.problems:
        r.fail("architectures", "must list at least one architecture", [])
    return found or ("x86_64",)


def _quoted_text(r: _Reader, raw: Mapping[str, Any], key: str) -> str | None:
    value = r.string(raw, key, key)
    if key == "source" and value is not None and QUOTE_BREAK.search(value):
        r.fail(key, 'must not contain double quotes, backquotes, backslashes or "$("', value)
    return value


MAX_PASSTHROUGH_BYTES = 256 * 1024  # kits, sizes, plans, page: sent as JSON to the API


def _passthrough(r: _Reader, key: str, value: Any) -> bool:
    """kits, sizes and plans are lists of mappings with a name; page is a mapping. All of
    it must be plain JSON (a YAML date is not), and small enough to send."""
    if key == "page":
        if not isinstance(value, Mapping):
            r.fail(key, "must be a mapping", value)
            return False
    elif not isinstance(value, list):
        r.fail(key, "must be a list", value)
        return False
    else:
        for index, item in enumerate(value):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                r.fail(f"{key}[{index}]", "must be a mapping with a name", item)
                return False
    problem = _json_problem(value, key)
    if problem:
        r.fail(*problem)
        return False
    if len(json.dumps(value)) > MAX_PASSTHROUGH_BYTES:
        r.fail(key, f"is larger than {MAX_PASSTHROUGH_BYTES // 1024} KiB as JSON")
        return False
    return True


def _json_problem(value: Any, path: str) -> tuple[str, str, Any] | None:
    """The first value that JSON cannot carry (a date, binary), as (path, what, value)."""
    pending = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, Mapping):
            for k, v in item.items():
                if not isinstance(k, str):
                    return (where, "keys must be strings", k)
                pending.append((f"{where}.{k}", v))
        elif isinstance(item, list):
            pending.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        elif item is not None and not isinstance(item, str | int | float | bool):
            return (where, "must be a string, number, true/false, list or mapping", item)
        elif isinstance(item, float) and not math.isfinite(item):
            return (where, "must be a finite number (JSON has no .inf or .nan)", item)
    return None


def _pattern_field(
    r: _Reader, raw: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str
) -> str | None:
    value = r.string(raw, key, key)
    if value is not None and (len(value) > MAX_FIELD_LENGTH or not pattern.fullmatch(value)):
        r.fail(key, what, value)
        return None
    return value


def _unknown_keys(r: _Reader, data: Any, key: Key, path: str) -> None:
    """Refuse every key the declaration does not know, at every level, by its full path:
    a misspelt key would otherwise drop what it held without a word."""
    if key.kind == "list" and key.items is not None and isinstance(data, list):
        for index, item in enumerate(data):
            _unknown_keys(r, item, key.items, f"{path}[{index}]")
    if key.kind != "mapping" or key.keys is None or not isinstance(data, Mapping):
        return
    for name, value in data.items():
        where = f"{path}.{name}" if path else str(name)
        child = key.keys.get(name) if isinstance(name, str) else None
        if child is not None:
            _unknown_keys(r, value, child, where)
            continue
        migration = MIGRATIONS.get(re.sub(r"\[\d+\]", "[]", where))
        near = difflib.get_close_matches(str(name), list(key.keys), n=1, cutoff=0.7)
        hint = f": {migration}" if migration else f"; did you mean `{near[0]}`?" if near else ""
        r.fail(where, f"{key.unknown}{hint}")


def from_mapping(raw: Any, filename: str = "instellar.yml") -> Config:
    """Validate a parsed instellar.yml; raise :class:`ConfigError` listing every problem."""
    r = _Reader(filename)
    if raw is None:
        raise ConfigError(f"{filename}: the file is empty")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{filename}: the top level must be a mapping (got {_show(raw)})")

    types: dict[Any, PackageType] = {"default": "default", "static": "static", "custom": "custom"}
    given_type = raw.get("type") or "default"
    package_type = types.get(given_type, "default") if isinstance(given_type, str) else "default"
    if not isinstance(given_type, str) or given_type not in types:
        r.fail("type", "must be one of default, static, custom", given_type)

    stack = r.string(raw, "stack", "stack")
    if stack is not None and not STACK_FORM.fullmatch(stack):
        r.fail("stack", "must be alpine/<version>, e.g. alpine/3.20 or alpine/edge", stack)

    deployment = {}
    for key in PASSTHROUGH:
        if key in raw and raw[key] is not None and _passthrough(r, key, raw[key]):
            deployment[key] = raw[key]

    config = Config(
        type=package_type,
        stack=stack,
        architectures=_architectures(r, raw),
        dependencies=_dependencies(r, raw),
        build=_build(r, raw),
        source=_quoted_text(r, raw, "source"),
        package=_quoted_text(r, raw, "package"),
        run=_run(r, raw, package_type),
        hooks=_hooks(r, raw),
        license=_pattern_field(
            r, raw, "license", LICENSE, "must be an SPDX license expression, e.g. MIT"
        )
        or DEFAULT_LICENSE,
        maintainer=_pattern_field(
            r, raw, "maintainer", MAINTAINER, "must be 'Name <address@example.com>'"
        ),
        deployment=deployment,
    )
    _unknown_keys(r, raw, INSTELLAR, "")
    if r.problems:
        raise ConfigError(*r.problems)
    return config


MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 64  # nesting of lists and mappings
MAX_VALUES = 100_000  # every value, counting each use of a YAML alias


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (C when available), refusing duplicate keys, as v8's parser did not."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class says so
                break
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first})",
                    key_node.start_mark,
                )
        return dict(super().construct_mapping(node, deep))


def _children(item: Any) -> list[Any]:
    if isinstance(item, Mapping):
        return [*item.keys(), *item.values()]
    return item if isinstance(item, list) else []


def _check_size(raw: Any, filename: str) -> None:
    """Refuse absurd nesting, alias bombs and recursive aliases before anything walks the
    data: each container's size is counted as if its aliases were expanded, but every
    container is visited once."""
    sizes: dict[int, int] = {}  # id -> expanded size; 0 while its children are counted
    pending: list[tuple[Any, int, bool]] = [(raw, 1, False)]
    while pending:
        item, depth, counted = pending.pop()
        children = _children(item)
        if not children:
            continue
        if counted:
            nested = [sizes[id(c)] for c in children if _children(c)]
            if 0 in nested:
                raise ConfigError(f"{filename}: an alias refers to itself")
            sizes[id(item)] = 1 + len(children) - len(nested) + sum(nested)
            if sizes[id(item)] > MAX_VALUES:
                raise ConfigError(
                    f"{filename}: more than {MAX_VALUES} values once its aliases are expanded"
                )
            continue
        if id(item) in sizes:
            if sizes[id(item)] == 0:
                raise ConfigError(f"{filename}: an alias refers to itself")
            continue
        if depth > MAX_DEPTH:
            raise ConfigError(f"{filename}: nested more than {MAX_DEPTH} levels deep")
        sizes[id(item)] = 0
        pending.append((item, depth, True))
        pending.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def parse(text: str, filename: str = "instellar.yml") -> Config:
    """Parse YAML text with a safe loader and validate it."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark else "unknown line"
        raise ConfigError(f"{filename}: {where}: invalid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{filename}: invalid YAML: {error.__class__.__name__}") from None
    except RecursionError:
        raise ConfigError(f"{filename}: nested more than {MAX_DEPTH} levels deep") from None
    _check_size(raw, filename)
    return from_mapping(raw, filename)


def load(path: str | Path) -> Config:
    """Read and validate an instellar.yml file."""
    path = Path(path)
    try:
        # Opened without blocking: a FIFO given as --config must not hang the run.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse(text, path.name)
