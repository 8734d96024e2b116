"""Merge and verify against peers on the same data, in the same run.

500 packages of about 200 KB across two arches, signed with a 4096-bit key.
- ``pakman merge`` (verification included) against ``zip -r -q`` (target <= 0.5x);
- ``pakman verify`` against real ``apk verify`` in the Alpine chroot (target <= 0.7x).

Run: python benchmarks/merge_verify.py [packages] [runs]   (root, for the chroot)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit import alpine as chroot
from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.tools import Missing
from pakman import keys


def timed(cmd: list[str], runs: int, cwd: Path | None = None) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=cwd)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def generate(root: Path, count: int) -> SigningKey:
    key = SigningKey(keys.generate(4096), "bench-app.rsa.pub")
    for arch in ("x86_64", "aarch64"):
        built = [
            make_package(
                key,
                f"pkg{i:03d}",
                "1.0.0-r0",
                arch,
                files={f"usr/share/pkg{i:03d}/blob": os.urandom(200_000)},
            )
            for i in range(count // 2)
        ]
        write_repo(root / "bench", key, built, arch)
    return key


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp:
        base = Path(tmp)
        tree = base / "packages"
        key = generate(tree, count)
        public = key.write_public(base / "keys")
        files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
        size = sum((tree / f).stat().st_size for f in files)
        print(f"data: {len(files)} files, {size / 1e6:.0f} MB, 2 arches, cores: {os.cpu_count()}")

        pakman = [sys.executable, "-m", "pakman.cli"]
        merge_t = timed(
            [*pakman, "merge", str(tree), "--output", str(base / "p.zip"), "--key", str(public)],
            runs,
        )
        zip_t = timed(["zip", "-r", "-q", str(base / "z.zip"), "bench"], runs, cwd=tree)
        print(f"pakman merge (with verify): {merge_t:6.2f} s")
        print(f"zip -r -q:                  {zip_t:6.2f} s")
        print(f"ratio merge / zip:          {merge_t / zip_t:6.2f}x (target <= 0.5x)")

        verify_t = timed([*pakman, "verify", str(tree), "--key", str(public)], runs)
        print(f"pakman verify:              {verify_t:6.2f} s")
        try:
            root = chroot.build_root()
        except Missing as error:  # not root, or a tool missing: report, don't fail
            print(f"apk verify: not run ({error})")
            return
        with chroot.overlay(root) as alpine:
            alpine.bind(base, "/work", readonly=True)
            script = "cd /work/packages && apk --keys-dir /work/keys verify " + " ".join(files)
            # Each run mounts the root in namespaces of its own: that cost is not apk's.
            setup_t = timed(alpine.command("true"), runs)
            apk_t = timed(alpine.command(script), runs) - setup_t
        print(f"apk verify (chroot):        {apk_t:6.2f} s (root setup {setup_t:.3f} s left out)")
        print(f"ratio verify / apk verify:  {verify_t / apk_t:6.2f}x (target <= 0.7x)")


if __name__ == "__main__":
    main()
