"""A folder laid out like the bucket (``--store file:///srv/pakman``): atomic renames."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

from pakman.digest import READ_CHUNK
from pakman.errors import PublishError
from pakman.storage.objects import (
    Condition,
    LocalObject,
    Progress,
    RemoteObject,
    Staged,
    check_deadline,
    too_large,
)


@dataclass
class FileStore:
    """A folder laid out like the bucket: ``file:///srv/pakman``. Writes are atomic renames."""

    root: Path
    deadline: float | None = None  # time.monotonic() after which no write starts

    def describe(self) -> str:
        return f"file://{self.root}"

    def check_deadline(self) -> None:
        check_deadline(self.deadline, self.describe())

    def connect(self) -> None:
        pass

    def ensure_ready(self, create: bool) -> None:
        if not self.root.is_dir():
            if not create:
                raise PublishError(f"store {self.describe()}: no such folder (use --create-bucket)")
            self.root.mkdir(parents=True)

    def _files(self, prefix: str) -> Iterator[Path]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.startswith(".pakman-"):
                    yield path

    def list(self, prefix: str, *, checksums: bool = False) -> dict[str, RemoteObject]:
        found = {}
        for path in self._files(prefix):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                info = path.stat()
                found[key] = RemoteObject(key, info.st_size, modified=info.st_mtime)
        return found

    def matches(self, local: LocalObject, remote: RemoteObject) -> bool:
        if local.size != remote.size:
            return False
        try:
            with (self.root / remote.key).open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest() == local.sha256
        except OSError:
            return False

    def _write_temporary(self, local: LocalObject, progress: Progress | None) -> Path:
        target = self.root / local.key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A fresh name (O_EXCL), never one another writer could have planted.
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=".pakman-")
            sent = hashlib.sha256()
            with os.fdopen(fd, "wb") as handle:
                if local.body is not None:
                    handle.write(local.body)
                    sent.update(local.body)
                else:
                    assert local.path is not None
                    with local.path.open("rb") as source:
                        while chunk := source.read(READ_CHUNK):
                            handle.write(chunk)
                            sent.update(chunk)
            os.chmod(name, 0o644)
        except OSError as error:
            raise PublishError(
                f"store {self.describe()}: cannot write {local.key}: {error.strerror}"
            ) from None
        if sent.hexdigest() != local.sha256:
            Path(name).unlink(missing_ok=True)
            raise local.changed()
        if progress:
            progress(local.size)
        return Path(name)

    def put(
        self,
        local: LocalObject,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,  # a folder has no ETags: renames are unconditional
    ) -> str | None:
        self._write_temporary(local, progress).replace(self.root / local.key)
        return None

    def stage(
        self,
        local: LocalObject,
        pool: Executor,
        progress: Progress | None = None,
        *,
        only_if: Condition | None = None,
    ) -> Staged:
        copying = pool.submit(self._write_temporary, local, progress)
        return _FileStaged(copying, self.root / local.key)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def head(self, key: str) -> RemoteObject | None:
        path = self.root / key
        return RemoteObject(key, path.stat().st_size) if path.is_file() else None

    def read_versioned(self, key: str, limit: int | None = None) -> tuple[bytes, str] | None:
        """The object and its version (the SHA-256 of its bytes), or None; with
        ``limit``, a bigger one is refused (:class:`TooLarge`) unread."""
        path = self.root / key
        if limit is not None and path.is_file() and path.stat().st_size > limit:
            raise too_large(self.describe(), key, limit)
        data = self.get(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def write_if(self, local: LocalObject, version: str | None) -> bool:
        """Write ``local`` only while the object is still at ``version`` (None: absent),
        under a lock beside it: False when another writer changed it meanwhile."""
        import fcntl

        target = self.root / local.key
        target.parent.mkdir(parents=True, exist_ok=True)
        with _lock_file(target.parent / ".pakman-lock", self.describe()) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_versioned(local.key)
            if (current[1] if current else None) != version:
                return False
            self.put(local)
            return True

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


@contextlib.contextmanager
def _lock_file(path: Path, where: str) -> Iterator[int]:
    """The lock file beside an object, never through a link planted in its place: a link
    there would make the run create or open a file outside the store."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise PublishError(
            f"store {where}: {path.name} in {path.parent}: cannot open it as a plain file"
            f" ({error.strerror}); is it a link? remove it"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PublishError(f"store {where}: {path}: not a plain file; remove it")
        yield fd
    finally:
        os.close(fd)


@dataclass
class _FileStaged:
    copying: Future[Path]
    target: Path

    def commit(self) -> str | None:
        self.copying.result().replace(self.target)
        return None

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.copying.result().unlink()
