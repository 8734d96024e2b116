"""The module's glue to the Dagger engine: the error boundary every function is declared
behind, and the moves of bytes between the engine and the module's runtime (exports,
secrets' plaintext, folders handed back, blocking steps off the event loop).

The engine's root object is imported here only; the other modules call it as
``engine.dag``: one name, which the offline tests replace with their stand-in engine.
"""

import contextlib
import functools
import inspect
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import anyio
import dagger
from dagger import dag as dag  # re-exported: the one name for the engine's root object
from dagger.mod._exceptions import FunctionError  # not re-exported; the SDK's own class

from pakman.errors import PakmanError
from pakman.merge import ARCHIVE_NAME

_P = ParamSpec("_P")
_R = TypeVar("_R")


class PakmanFailure(FunctionError):
    """A failure reported to the caller as one clear message.

    The SDK re-raises a ``FunctionError`` as it is; any other exception it logs with its
    whole traceback into the function's output first.
    """


@contextlib.contextmanager
def _one_message() -> Iterator[None]:
    try:
        yield
    except PakmanError as error:
        raise PakmanFailure("\n".join(error.problems)) from None
    except dagger.ExecError as error:  # a container step the function ran itself failed
        raise PakmanFailure(
            "\n".join(filter(None, (error.message, error.stderr.strip())))
        ) from None


def reported(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` behind the module's one error boundary: a library refusal or a failed exec
    reaches the caller as its message, without a traceback."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def boundary(*args: Any, **kwargs: Any) -> Any:
            with _one_message():
                return await fn(*args, **kwargs)

        return cast(Callable[_P, _R], boundary)

    @functools.wraps(fn)
    def sync_boundary(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _one_message():
            return fn(*args, **kwargs)

    return sync_boundary


def function(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A function of the module, behind the error boundary; the engine may cache it."""
    return dagger.function(reported(fn))


def uncached(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A function that talks to the outside world, or must make something new each call:
    it runs every time. The typed overloads of ``dagger.function`` lack ``cache``."""
    register: Callable[[Callable[_P, _R]], Callable[_P, _R]]
    register = dagger.function(cache="never")  # type: ignore[call-overload]
    return register(reported(fn))


async def plaintext(secret: dagger.Secret) -> str:
    """A secret's value, for pakman's own code in this runtime only."""
    return await secret.plaintext()


async def exported(directory: dagger.Directory, path: Path) -> Path:
    """``directory`` exported to ``path`` in this runtime."""
    await directory.export(str(path))
    return path


@dataclass(frozen=True)
class Inputs:
    """The packages tree and the archive, exported to a temporary folder of this runtime
    that holds what else a step reads."""

    tree: Path
    archive: Path | None
    folder: Path


@contextlib.asynccontextmanager
async def inputs(
    packages: dagger.Directory, archive: dagger.File | None = None
) -> AsyncIterator[Inputs]:
    """The packages tree, and the archive when one is given, exported to this runtime."""
    with tempfile.TemporaryDirectory(prefix="pakman-") as tmp:
        tree = await exported(packages, Path(tmp) / "packages")
        zip_path = None
        if archive is not None:
            zip_path = Path(tmp) / ARCHIVE_NAME
            await archive.export(str(zip_path))
        yield Inputs(tree, zip_path, Path(tmp))


def working_folder(prefix: str) -> Path:
    """A new folder in the module's working folder, whose contents can be handed back."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="."))


async def handed_back(folder: Path) -> dagger.Directory:
    """A folder of the working folder, as a Directory. Made here, not passed as a call's
    argument (with_new_file's contents), which is sent verbatim to telemetry."""
    return await dag.current_module().workdir(folder.name).sync()


def handed_back_file(name: str) -> dagger.File:
    """A file of the module's working folder, as a File."""
    return dag.current_module().workdir_file(name)


async def in_thread(step: Callable[[], _R]) -> _R:
    """A blocking pipeline step, off the event loop."""
    return await anyio.to_thread.run_sync(step)
