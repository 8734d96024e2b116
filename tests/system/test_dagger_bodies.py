"""The Dagger module's function bodies, run here against moto's real S3 and real packages.

No engine runs here, so the engine's objects are stood in for by the few calls the bodies
make on them: a Directory the engine would export to the module's runtime, a File, a
Secret's plaintext. Everything past those calls is the module's real code and the same
pipeline functions the CLI calls; the tests compare the two outcomes object by object.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import rig
from tests.unit.test_dagger_bodies import (
    PUBLIC_PEM,
    THROWAWAY,
    abuild_output,
    build_body,
    built_by_abuild,
    hello,
)


def test_build_signs_with_the_real_key_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alpine: rig.Overlay
) -> None:
    """The output is what it was: <org>/<arch>/*.apk and an index, signed by the real key
    under its name; real apk verifies and installs it trusting that key only."""
    engine = built_by_abuild()
    result = build_body(monkeypatch, engine, hello(tmp_path))
    out = tmp_path / "out"
    for name, (data, _) in engine.files(result).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        f"pakman/{arch}/{name}"
        for arch in ("aarch64", "x86_64")
        for name in ("APKINDEX.tar.gz", "hello-1.0.0-r0.apk", "hello-openrc-1.0.0-r0.apk")
    ]
    # The control and data streams are abuild's, byte for byte: only the signature changed.
    made = abuild_output("linux/amd64")
    for name in ("hello-1.0.0-r0.apk", "hello-openrc-1.0.0-r0.apk"):
        before, after = (
            made[f"pakman/x86_64/{name}"][0],
            (out / "pakman/x86_64" / name).read_bytes(),
        )
        assert before != after
        assert after.endswith(before[len(before) - 200 :])
    real = tmp_path / "trusted"
    real.mkdir()
    (real / "pakman-hello.rsa.pub").write_text(PUBLIC_PEM)
    throwaway = tmp_path / "throwaway"
    for key in THROWAWAY.values():
        key.write_public(throwaway)
    alpine.bind(out, "/out", readonly=True)
    alpine.bind(real, "/trusted", readonly=True)
    alpine.bind(throwaway, "/throwaway", readonly=True)
    files = " ".join(f"/out/{p.relative_to(out)}" for p in sorted(out.rglob("*")) if p.is_file())
    verified = alpine.run(f"apk verify --keys-dir /trusted {files}", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    refused = alpine.run(f"apk verify --keys-dir /throwaway {files}", check=False)
    assert refused.returncode != 0  # no signature of the build's keys is left
    installed = alpine.run(
        "apk add --repositories-file /dev/null --repository /out/pakman --keys-dir /trusted"
        " hello hello-openrc && apk info -e hello",
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.split()[-1] == "hello"
