"""The engine selftest's install commands, run offline with real apk-tools 3 in the Alpine
root: a built repository of examples/hello, and a stand-in for Alpine's repositories (no
network in the root) holding what the package needs from Alpine."""

from __future__ import annotations

from tests.support import rig

try:
    from pakman_tests.install import FROM_ALPINE
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-tests module is not installed (pip install -e ./ci/tests)")
    raise
from pakman import config, render
from pakman.identity import Identity
from tests.support import rig
from tests.support.paths import ROOT

HELLO = Identity("pakman/hello", version="1.0.0", build=1)


def hello_depends() -> tuple[str, ...]:
    """What the rendered APKBUILD of examples/hello depends on."""
    cfg = config.parse((ROOT / "examples" / "hello" / "instellar.yml").read_text(), "instellar.yml")
    return render.runtime_depends(cfg, HELLO)


def test_alpine_provides_what_the_built_repository_does_not() -> None:
    """Every dependency of hello is built with it (its -openrc) or installed from Alpine
    first: otherwise a repository narrowed to the built one cannot resolve it."""
    built = {HELLO.slug, f"{HELLO.slug}-openrc"}
    assert set(hello_depends()) - built <= set(FROM_ALPINE)
    assert {"s6", "execline"} <= set(hello_depends())
