"""The Dagger module's one error boundary: every function, refused by the library or by a
failed exec, reaches the caller as a PakmanFailure (the SDK's FunctionError, which it
re-raises as it is) with the message alone: no traceback, no chained exception."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import dagger
import pytest

from tests.support import rig
from tests.support.dagger_standin import Engine
from tests.support.instellar import SHA
from tests.support.paths import ROOT

try:
    from pakman_ci import Pakman, engine
    from pakman_ci.engine import PakmanFailure
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-ci module is not installed (pip install -e ./ci)")
    raise

FUNCTIONS: dict[str, Any] = cast(Any, Pakman).__dagger_object_type__.functions


def function_names() -> set[str]:
    """The module's functions; "" is the constructor, once a dispatch has registered it."""
    return {name for name in FUNCTIONS if name}


BAD_REPOSITORY = "repository: must be owner/name as on GitHub (got 'nope')"
BAD_PLATFORM = "platform: not supported (got 'plan9/mips'; known: "
PLAN9 = dagger.Platform("plan9/mips")


def refusals(stand_in: Engine, tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """For every function: arguments the library refuses, and the message's start."""
    hello = tmp_path / "hello"
    shutil.copytree(ROOT / "examples" / "hello", hello)
    broken = tmp_path / "broken"
    broken.mkdir()
    config = (hello / "instellar.yml").read_text()
    (broken / "instellar.yml").write_text(config.replace("stack: alpine/3.20", "stack: dos/6"))
    (tmp_path / "empty").mkdir()
    source, empty = stand_in.host_directory(hello), stand_in.host_directory(tmp_path / "empty")
    secret = stand_in.secret("key", "not a key")
    store = {"bucket": "b", "access_key_id": secret, "secret_access_key": secret}
    return {
        "builder": ({"source": source, "platform": PLAN9}, BAD_PLATFORM),
        "recipe": ({"platform": PLAN9}, BAD_PLATFORM),
        "bootstrap": ({"source": source, "repository": "nope"}, BAD_REPOSITORY),
        "build": (
            {"source": source, "repository": "nope", "private_key": secret, "public_key": secret},
            BAD_REPOSITORY,
        ),
        "merge": ({"packages": empty, "repository": "nope"}, BAD_REPOSITORY),
        "publish": ({"packages": empty, "repository": "nope", "sha": SHA, **store}, BAD_REPOSITORY),
        "deploy": (
            {
                "source": source,
                "packages": empty,
                "repository": "nope",
                "sha": SHA,
                "public_key": secret,
                "instellar_auth_token": secret,
                "instellar_package_token": secret,
            },
            BAD_REPOSITORY,
        ),
        "repo": (
            {
                "packages": empty,
                "repository": "nope",
                "public_key": secret,
                "private_key": secret,
                "source": source,
                **store,
            },
            BAD_REPOSITORY,
        ),
        "keygen": ({"repository": "nope"}, BAD_REPOSITORY),
        "check": (
            {"source": stand_in.host_directory(broken)},
            "instellar.yml: stack: ",
        ),
    }


def called(fn: Callable[..., Any], **arguments: Any) -> Any:
    """What the SDK does with a function's result: await it when it is a coroutine."""
    result = fn(**arguments)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def test_every_function_reports_a_refusal_as_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in = Engine()
    monkeypatch.setattr(engine, "dag", stand_in)
    monkeypatch.chdir(tmp_path)  # the module's working folder
    cases = refusals(stand_in, tmp_path)
    assert set(cases) == function_names()  # a new function needs its case here
    for name, (arguments, message) in cases.items():
        with pytest.raises(PakmanFailure) as raised:
            called(getattr(Pakman(), name), **arguments)  # what the SDK calls
        failure = raised.value
        assert str(failure).startswith(message), name
        assert len(str(failure).splitlines()) == 1, name
        assert (failure.__cause__, failure.__suppress_context__) == (None, True), name


def test_a_refusal_through_the_sdk_dispatch_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module: Any = cast(Any, Pakman).__dagger_module__
    with caplog.at_level("DEBUG"), pytest.raises(PakmanFailure, match="repository: must be"):
        asyncio.run(module.get_result("Pakman", {}, "keygen", {"repository": "nope"}))
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text


def test_a_failed_exec_of_a_function_is_one_failure_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exec a function runs itself (here the git probe of the source) used to escape
    as the SDK's ExecError, which the SDK logs with its whole traceback."""
    stand_in = Engine(fails=lambda args, platform: args[:2] == ("apk", "add"))
    monkeypatch.setattr(engine, "dag", stand_in)
    hello = tmp_path / "hello"
    shutil.copytree(ROOT / "examples" / "hello", hello)
    with pytest.raises(PakmanFailure) as raised:
        called(Pakman().bootstrap, source=stand_in.host_directory(hello), repository="acme/hello")
    first, detail = str(raised.value).splitlines()
    assert first.startswith("process ('apk', 'add', '--no-cache', 'git') did not complete")
    assert detail == "apk: failed"
    assert raised.value.__suppress_context__
