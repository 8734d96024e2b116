"""``pakman sign`` against the floor of abuild-sign's own work, on the same data, same run.

500 packages of about 200 KB across two arches, built with a throwaway key, signed with a
4096-bit key.
- ``pakman sign`` (every file checked, re-signed, written and synced) against
  ``openssl dgst -sha256 -sign`` once per file, which is what ``abuild-sign`` runs per file
  before its tar, gzip and mv (left out: a floor, not the whole peer; target <= 1.0x);
- a re-run on the signed tree (nothing to rewrite) against the same floor.

Run: python benchmarks/sign.py [packages] [runs]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.apkfactory import SigningKey, make_package, write_repo
from pakman import keys


def timed(cmd: list[str], runs: int, before: list[str] | None = None) -> float:
    samples = []
    for _ in range(runs):
        if before:
            subprocess.run(before, check=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def control_streams(tree: Path, out: Path) -> list[Path]:
    """Each package's control stream as a file: what abuild-sign signs."""
    out.mkdir()
    written = []
    for number, package in enumerate(sorted(tree.rglob("*.apk"))):
        data = package.read_bytes()
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(data)
        rest = inflater.unused_data  # control + data
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress(rest)
        path = out / f"{number}.control.tar.gz"
        path.write_bytes(rest[: len(rest) - len(inflater.unused_data)])
        written.append(path)
    return written


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp:
        base = Path(tmp)
        built = base / "built"
        throwaway = SigningKey(keys.generate(2048), "builder.rsa.pub")
        for arch in ("x86_64", "aarch64"):
            packages = [
                make_package(
                    throwaway,
                    f"pkg{i:03d}",
                    "1.0.0-r0",
                    arch,
                    files={f"usr/share/pkg{i:03d}/blob": os.urandom(200_000)},
                )
                for i in range(count // 2)
            ]
            write_repo(built / "bench", throwaway, packages, arch)
        private = base / "bench-app.rsa"
        private.write_bytes(keys.generate(4096).private_pem)
        files = sorted(p for p in built.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"data: {len(files)} files, {size / 1e6:.0f} MB, 2 arches, cores: {os.cpu_count()}")

        tree = base / "tree"
        fresh = ["sh", "-c", f"rm -rf '{tree}' && cp -a '{built}' '{tree}'"]
        sign = [
            sys.executable, "-m", "pakman.cli", "sign", str(tree),
            "--private-key", str(private), "--key-name", "bench-app.rsa.pub",
        ]  # fmt: skip
        first_t = timed(sign, runs, before=fresh)
        again_t = timed(sign, runs)
        controls = control_streams(built, base / "controls")
        loop = (
            f'for f in "{base}"/controls/*.control.tar.gz; do'
            f' openssl dgst -sha256 -sign "{private}" -out "$f.sig" "$f" || exit 1; done'
        )
        openssl_t = timed(["sh", "-c", loop], runs)
        print(f"pakman sign (built tree):     {first_t:6.2f} s")
        print(f"pakman sign (re-run):         {again_t:6.2f} s")
        print(f"openssl dgst -sign x {len(controls)}:    {openssl_t:6.2f} s")
        print(f"ratio sign / openssl:         {first_t / openssl_t:6.2f}x (target <= 1.0x)")
        print(f"ratio re-run / openssl:       {again_t / openssl_t:6.2f}x")
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
