"""Peak memory of pakman merge and publish (both verifying) on a large tree.

Data: real signed packages totalling about 2 GB (eight of 256 MB by default), with their
indexes. Memory must stay bounded by the part size and concurrency, not grow with the
size of a package: figures are each process's VmHWM, beside the largest file's size.

Run: python benchmarks/memory.py [packages] [MB each]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.peak_rss import PEAK_RSS
from devkit.s3 import moto_server
from pakman import keys


def peak(args: list[str], env: dict[str, str]) -> int:
    """Run the CLI; its peak RSS in MiB."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {result.stderr[-800:]}")
    return int(result.stderr.strip().splitlines()[-1]) // 1024


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    each_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp, moto_server() as s3:
        base = Path(tmp)
        key = SigningKey(keys.generate(4096), "acme-app.rsa.pub")
        built = [
            make_package(key, f"big{i}", files={"blob": os.urandom(each_mb * 1024 * 1024)})
            for i in range(count)
        ]
        write_repo(base / "packages" / "acme", key, built)
        del built
        public = key.write_public(base / "keys")
        total = sum(p.stat().st_size for p in (base / "packages").rglob("*") if p.is_file())
        env = {**os.environ, **s3.env(), "XDG_CACHE_HOME": str(base / "cache")}
        print(f"data: {count} packages of {each_mb} MB = {total / 1e9:.2f} GB, signed")
        merge_mib = peak(
            [
                "merge",
                str(base / "packages"),
                "--output",
                str(base / "p.zip"),
                "--key",
                str(public),
            ],
            env,
        )
        s3.client().create_bucket(Bucket="memory")
        publish_mib = peak(
            [
                "publish",
                str(base / "packages"),
                "--archive",
                str(base / "p.zip"),
                "--key",
                str(public),
                "--bucket",
                "memory",
                "--repository",
                "acme/app",
                "--sha",
                "0" * 40,
            ],
            env,
        )
        print(f"pakman merge   peak RSS: {merge_mib} MiB")
        print(f"pakman publish peak RSS: {publish_mib} MiB (largest file {each_mb} MB)")


if __name__ == "__main__":
    main()
