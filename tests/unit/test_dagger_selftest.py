"""The engine selftest's install commands, run offline with real apk-tools 3 in the Alpine
root: a built repository of examples/hello, and a stand-in for Alpine's repositories (no
network in the root) holding what the package needs from Alpine."""

from __future__ import annotations

from tests.support import rig
from tests.system.test_dagger_selftest import HELLO, hello_depends

try:
    from pakman_tests.install import FROM_ALPINE
except ImportError:  # a skip locally; under CI=true, a failure
    rig.need(False, "the pakman-tests module is not installed (pip install -e ./ci/tests)")
    raise


def test_alpine_provides_what_the_built_repository_does_not() -> None:
    """Every dependency of hello is built with it (its -openrc) or installed from Alpine
    first: otherwise a repository narrowed to the built one cannot resolve it."""
    built = {HELLO.slug, f"{HELLO.slug}-openrc"}
    assert set(hello_depends()) - built <= set(FROM_ALPINE)
    assert {"s6", "execline"} <= set(hello_depends())
