"""A stand-in for the Dagger engine, modelled on its source (dagger v0.21.8), for the
module's function bodies. Test code.

What it models, and where the engine does the same:
- Every call is a node whose digest covers its parent's digest, its field and its
  arguments (``dagql``'s call IDs); a Directory uploaded from a host or read from the
  module's workdir is keyed by its contents, and so is a ``filter`` of such a directory
  (``core/schema/directory.go``: ``maintainContentHashing``).
- Nothing runs until something is read (``sync``, ``stdout``, ``contents``, ``export``):
  then every exec of the chain not run before runs, in order, and the first that fails
  raises ``ExecError`` with its own command, whichever read triggered it.
- Each exec records the cache volumes mounted while it ran, with their sharing mode (the
  engine holds a LOCKED volume's lock for the exec's whole run).
- Every call's arguments are recorded as the engine sees them: objects as IDs, plain
  values verbatim (as telemetry and ``--debug`` show non-sensitive arguments).

Packages "built" by a container come from ``build_output``, a function of the platform,
and a file a step wrote in it from ``container_file``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagger
import gql
from dagger._exceptions import QueryErrorValue

from tests.support.enginepatterns import engine_ignores

Files = dict[str, tuple[bytes, int]]  # path -> (bytes, mode)


def _included(path: str, patterns: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in patterns) or any(
        not engine_ignores(path, ["*", "!" + p]) for p in patterns
    )


@dataclass(frozen=True)
class Call:
    """One call the module made: the receiver's type, the field and its arguments."""

    kind: str
    field: str
    args: str  # as the engine receives them: objects by ID, plain values verbatim


@dataclass(frozen=True)
class Exec:
    """One exec the engine ran: its command, user and the cache volumes it held."""

    args: tuple[str, ...]
    digest: str  # its cache key: the same digest, the same cached result
    platform: str
    user: str
    caches: dict[str, tuple[str, str]]  # path -> (volume key, sharing mode)
    secrets: tuple[str, ...]  # paths of mounted secrets


# Which type a field returns, where it is not the receiver's own.
_RETURNS = {
    ("Container", "directory"): "Directory",
    ("Container", "file"): "File",
    ("Directory", "file"): "File",
    ("Directory", "changes"): "Changeset",
    ("CurrentModule", "workdir"): "Directory",
    ("CurrentModule", "workdir_file"): "File",
}


class Node:
    """An engine object: a chain of calls, evaluated only when read."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        parent: Node | None,
        name: str,
        args: dict[str, Any],
        content: Files | None = None,
    ) -> None:
        self.engine, self.kind, self.parent, self.name, self.args = engine, kind, parent, name, args
        self.content = content  # set for content-hashed directories
        if content is not None:
            self.digest = "content:" + _content_digest(content)
        else:
            seed = json.dumps([parent.digest if parent else "", name, engine.encode(args)])
            self.digest = hashlib.sha256(seed.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"{self.kind}#{self.digest[:12]}"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Node:
            named = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
            self.engine.record(self.kind, name, named)
            kind = _RETURNS.get((self.kind, name), self.kind)
            content = None
            if self.kind == "Directory" and name == "filter" and self.content is not None:
                content = _filter(self.content, kwargs.get("exclude"), kwargs.get("include"))
            if self.kind == "CurrentModule" and name == "workdir":
                content = _read_host(Path(args[0]))
            return Node(self.engine, kind, self, name, named, content)

        return call

    # --- reads: these evaluate the chain --------------------------------------------

    def chain(self) -> list[Node]:
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    async def sync(self) -> Node:
        self.engine.record(self.kind, "sync", {})
        await asyncio.sleep(0.05)  # other platforms run meanwhile
        self.engine.evaluate(self)
        if self.kind == "Directory" and self.name == "directory" and self.parent is not None:
            platform = self.engine.platform(self)
            if platform in self.engine.lost_outputs:
                raise RuntimeError("the engine lost the output's snapshot")
            await asyncio.sleep(0.2)  # finishes well after another platform failed
            self.engine.finished.append(platform)
        return self

    async def stdout(self) -> str:
        self.engine.record(self.kind, "stdout", {})
        self.engine.evaluate(self)
        return ""  # the git probe: no repository, so the defaults

    async def contents(self) -> str:
        self.engine.record(self.kind, "contents", {})
        path, directory = self.args["arg0"], self.parent
        assert directory is not None
        if directory.kind == "Container":  # a file of a container, e.g. one a step wrote
            self.engine.evaluate(directory)
            return self.engine.container_file(self.engine.platform(directory), path).decode()
        files = self.engine.files(directory)
        if path not in files:
            raise engine_error(f"{path}: no such file or directory")
        return files[path][0].decode()

    async def entries(self) -> list[str]:
        self.engine.record(self.kind, "entries", {})
        return sorted({path.split("/")[0] for path in self.engine.files(self)})

    async def export(self, path: str, **kwargs: Any) -> str:
        self.engine.record(self.kind, "export", {"path": path, **kwargs})
        target = Path(path)
        if self.kind == "File":
            assert self.parent is not None
            data, mode = self.engine.files(self.parent)[self.args["arg0"]]
            target.write_bytes(data)
            return path
        for name, (data, mode) in self.engine.files(self).items():
            out = target / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            out.chmod(mode)
        return path

    async def plaintext(self) -> str:
        self.engine.record(self.kind, "plaintext", {})
        return str(self.engine.secrets[self.digest])


def _content_digest(content: Files) -> str:
    return hashlib.sha256(
        json.dumps(
            {k: hashlib.sha256(v).hexdigest() for k, (v, _) in sorted(content.items())}
        ).encode()
    ).hexdigest()


def _filter(content: Files, exclude: list[str] | None, include: list[str] | None) -> Files:
    kept = {k: v for k, v in content.items() if not engine_ignores(k, exclude or [])}
    if include:
        kept = {k: v for k, v in kept.items() if _included(k, include)}
    return kept


def _read_host(path: Path) -> Files:
    return {
        str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def engine_error(message: str, **extensions: Any) -> dagger.QueryError:
    """An API error as the SDK makes it from the engine's response (``QueryError`` picks
    ``ExecError`` by the response's ``_type``)."""
    value = QueryErrorValue(message, extensions=extensions)
    return dagger.QueryError([value], gql.GraphQLRequest("{ stand_in }"))


@dataclass
class Engine:
    """What the module's bodies call on ``dag``, and what they made the engine do."""

    build_output: Callable[[str], Files] = lambda platform: {}
    container_file: Callable[[str, str], bytes] = lambda platform, path: b""
    fails: Callable[[tuple[str, ...], str], bool] = lambda args, platform: False
    calls: list[Call] = field(default_factory=list)
    execs: list[Exec] = field(default_factory=list)
    lost_outputs: tuple[str, ...] = ()  # platforms whose output the engine fails to read
    secrets: dict[str, str] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)
    copied: dict[str, set[str]] = field(default_factory=dict)  # container path -> files
    finished: list[str] = field(default_factory=list)  # platforms whose output was read

    def encode(self, value: Any) -> Any:
        if isinstance(value, Node):
            return repr(value)
        if isinstance(value, dict):
            return {k: self.encode(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.encode(v) for v in value]
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        return str(value)  # platforms, enums: their names

    def record(self, kind: str, name: str, args: dict[str, Any]) -> None:
        self.calls.append(Call(kind, name, json.dumps(self.encode(args))))

    # --- roots ------------------------------------------------------------------------

    def _root(self, kind: str, name: str, args: dict[str, Any]) -> Node:
        self.record("Query", name, args)
        return Node(self, kind, None, name, args, {} if kind == "Directory" else None)

    def container(self, platform: Any = None) -> Node:
        return self._root("Container", "container", {"platform": platform or "linux/amd64"})

    def directory(self) -> Node:
        return self._root("Directory", "directory", {})

    def cache_volume(self, key: str) -> Node:
        return self._root("CacheVolume", "cacheVolume", {"key": key})

    def current_module(self) -> Node:
        return self._root("CurrentModule", "currentModule", {})

    def host_directory(self, path: Path) -> Node:
        """A directory the CLI uploaded: keyed by its contents."""
        return Node(self, "Directory", None, "host", {"path": str(path)}, _read_host(path))

    def secret(self, name: str, value: str) -> Node:
        node = Node(self, "Secret", None, "setSecret", {"name": name})
        self.secrets[node.digest] = value
        return node

    # --- evaluation -------------------------------------------------------------------

    def evaluate(self, node: Node) -> None:
        """Run every exec of the chain not run before, in order."""
        caches: dict[str, tuple[str, str]] = {}
        secrets: list[str] = []
        user, platform = "root", ""
        for step in node.chain():
            if step.kind == "Directory" and step.name == "directory" and step.parent:
                continue  # a container's folder: the container below was evaluated
            if step.name == "container":
                platform = str(step.args["platform"])
            elif step.name == "with_mounted_cache":
                volume = step.args["arg1"]
                sharing = str(step.args.get("sharing", "SHARED"))
                caches[step.args["arg0"]] = (str(volume.args["key"]), sharing.split(".")[-1])
            elif step.name == "without_mount":
                caches.pop(step.args["arg0"], None)
            elif step.name == "with_mounted_secret":
                secrets.append(step.args["arg0"])
            elif step.name == "with_user":
                user = step.args["arg0"]
            elif step.name == "with_exec" and step.digest not in self.ran:
                args = tuple(step.args["arg0"])
                if self.fails(args, platform):
                    raise engine_error(
                        f"process {args!r} did not complete successfully: exit code: 1",
                        _type="EXEC_ERROR",
                        cmd=list(args),
                        exitCode=1,
                        stdout="",
                        stderr=f"{args[0]}: failed",
                    )
                self.ran.add(step.digest)
                self.execs.append(
                    Exec(args, step.digest, platform, user, dict(caches), tuple(secrets))
                )
            elif step.name == "with_directory" and step.kind == "Container":
                copied = self.files(step.args["arg1"])
                exclude = step.args.get("exclude") or []
                self.copied.setdefault(step.args["arg0"], set()).update(
                    name for name in copied if not engine_ignores(name, exclude)
                )

    def platform(self, node: Node) -> str:
        return str(next(n for n in node.chain() if n.name == "container").args["platform"])

    def files(self, node: Node) -> Files:
        """A directory's files, evaluating what it is made of."""
        if node.content is not None:
            return dict(node.content)
        assert node.parent is not None or node.name == "directory", node.name
        if node.kind == "Directory" and node.name == "directory" and node.parent is not None:
            self.evaluate(node.parent)
            return self.build_output(self.platform(node))
        base = self.files(node.parent) if node.parent is not None else {}
        if node.name == "with_directory":
            path, other = node.args["arg0"].strip("./"), node.args["arg1"]
            for name, value in self.files(other).items():
                base[f"{path}/{name}" if path else name] = value
        elif node.name == "with_new_file":
            base[node.args["arg0"]] = (
                str(node.args["arg1"]).encode(),
                int(node.args.get("permissions", 0o644)),
            )
        elif node.name == "sync":
            pass
        return base
