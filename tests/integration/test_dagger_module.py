"""The Dagger module's surface, typed and dispatched offline (no engine here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.support import rig
from tests.support.paths import ROOT

try:  # only a guard here: these tests run the module, which must be installed
    import dagger  # noqa: F401
    from pakman_ci import Pakman  # noqa: F401
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "dagger-io and the pakman-ci module are not installed (pip install -e ./ci)")
    raise


def _tests_module_probe(probe: str) -> Any:
    """Run ``probe`` where the tests module is the main object; what it printed, as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGGER_MAIN_OBJECT": "Tests"},
        check=True,
    )
    return json.loads(result.stdout)


def test_the_tests_module_holds_the_selftest() -> None:
    """ci/tests is its own module (depending on the root one); introspected in a subprocess,
    where it is the main object."""
    config = json.loads((ROOT / "ci" / "tests" / "dagger.json").read_text())
    assert config["dependencies"] == [{"name": "pakman", "source": "../.."}]
    probe = textwrap.dedent("""
        import json
        from pakman_tests import Tests
        fn = Tests.__dagger_object_type__.functions["selftest"]
        p = {q.name: q for q in fn.parameters.values()}
        print(json.dumps({
            "check": fn.check,
            "cache": fn.cache_policy,
            "hello": p["hello"].default_path,
            "platforms": json.loads(p["platforms"].default_value),
        }))
    """)
    assert _tests_module_probe(probe) == {
        "check": True,
        "cache": "never",
        "hello": "/examples/hello",
        "platforms": ["linux/amd64", "linux/arm64"],
    }


def _mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_mypy_strict_passes_on_the_module() -> None:
    result = _mypy(ROOT / "ci" / "src")
    assert result.returncode == 0, result.stdout


def test_mypy_catches_misuse_of_the_dagger_api(tmp_path: Path) -> None:
    """The type checker is what stands in for an engine: prove it catches real mistakes."""
    bad = tmp_path / "bad_module.py"
    bad.write_text(
        textwrap.dedent("""
        import dagger
        from dagger import dag

        async def broken(source: dagger.Directory) -> str:
            ctr = dag.container(platform="linux/arm64")
            ctr = ctr.with_mounted_cache("/cache", "not-a-volume")
            ctr = ctr.with_exec("apk add git")
            ctr = ctr.with_excec(["true"])
            return "done"

        async def forgot_await(ctr: dagger.Container) -> str:
            return ctr.stdout()
    """)
    )
    out = _mypy(bad).stdout
    assert 'Argument "platform" to "container" of "Query" has incompatible type "str"' in out
    assert 'Argument 2 to "with_mounted_cache" of "Container" has incompatible type "str"' in out
    assert 'Argument 1 to "with_exec" of "Container" has incompatible type "str"' in out
    assert '"Container" has no attribute "with_excec"' in out
    assert 'Incompatible return value type (got "Coroutine[Any, Any, str]"' in out


def test_the_selftest_reads_both_keys_from_one_keygen_result() -> None:
    """keygen is uncached: the engine runs it again for every query from the root that
    selects it. The stand-in does the same, and a synced result is read as it is."""
    probe = textwrap.dedent("""
        import asyncio, itertools, json
        from pakman_tests.main import fresh_keys

        runs = itertools.count(1)

        class Synced:
            def __init__(self, n): self.n = n
            def file(self, name): return Read(lambda: self.n, name)

        class Read:
            def __init__(self, run, name): self.run, self.name = run, name
            async def contents(self):
                kind = "public" if self.name.endswith(".pub") else "private"
                return f"{kind}-{self.run()}"

        class Unsynced:  # every query from here runs keygen again
            def file(self, name): return Read(lambda: next(runs), name)
            async def sync(self): return Synced(next(runs))

        class Module:
            def keygen(self, repository): return Unsynced()

        public, private = asyncio.run(fresh_keys(Module()))
        print(json.dumps([public, private]))
    """)
    public, private = _tests_module_probe(probe)
    assert public.split("-")[1] == private.split("-")[1], (public, private)
