"""Two checkouts of pakman, interleaved round by round on the same data and the same S3
server (versitygw on 127.0.0.1): a first publish to a fresh bucket, then an unchanged
re-publish, each version in turn, the order alternating. Prints each version's medians
(wall and the CPU of all its processes) and the paired ratio new/old per case, which a
shared machine's drifting load affects far less than runs minutes apart.

Run: python benchmarks/ab_publish.py OLD_CHECKOUT NEW_CHECKOUT [rounds=8] [packages=200]
[big MB=150]

A checkout is a folder holding ``pakman/`` (``git worktree add /tmp/old <commit>``).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.publish import Run, children_cpu, empty, generate, server_cpu, tool
from devkit.s3 import versitygw_server


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    old, new = (Path(arg).resolve() for arg in sys.argv[1:3])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    big_mb = int(sys.argv[5]) if len(sys.argv) > 5 else 150
    for checkout in (old, new):
        if not (checkout / "pakman" / "__init__.py").is_file():
            raise SystemExit(f"error: {checkout}: no pakman/ in it")
        compileall.compile_dir(checkout / "pakman", quiet=1)  # as installed
    tool("versitygw")
    runs: dict[tuple[Path, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="pakman-ab-") as tmp, versitygw_server() as s3:
        data = Path(tmp) / "data"
        public = generate(data, count, big_mb)
        client = s3.client()
        for round_ in range(rounds):
            for checkout in (old, new) if round_ % 2 == 0 else (new, old):
                bucket = f"ab{round_}-{'new' if checkout == new else 'old'}"
                client.create_bucket(Bucket=bucket)
                env = {
                    **os.environ,
                    **s3.env(),
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "PYTHONPATH": str(checkout),
                    "PYTHONDONTWRITEBYTECODE": "",
                }
                argv = [
                    sys.executable, "-m", "pakman.cli", "publish", str(data / "packages"),
                    "--archive", str(data / "packages.zip"), "--key", str(public),
                    "--bucket", bucket, "--repository", "acme/app", "--sha", "0" * 40,
                ]  # fmt: skip
                for case in ("first publish", "re-publish"):
                    cpu, served = children_cpu(), server_cpu(s3.pid)
                    start = time.perf_counter()
                    done = subprocess.run(
                        argv, env=env, cwd=tmp, capture_output=True, text=True, check=False
                    )
                    seconds = time.perf_counter() - start
                    if done.returncode != 0:
                        raise SystemExit(f"{checkout}: {case} failed: {done.stderr[-800:]}")
                    runs.setdefault((checkout, case), []).append(
                        Run(seconds, children_cpu() - cpu, server_cpu(s3.pid) - served, "")
                    )
                empty(client, bucket)  # what later rounds would otherwise write back
                os.sync()
    print(f"rounds: {rounds}, order alternating; data: {count} packages + one of {big_mb} MB")
    for case in ("first publish", "re-publish"):
        for label, checkout in (("old", old), ("new", new)):
            got = runs[(checkout, case)]
            print(
                f"{case:<14} {label} {checkout}: wall"
                f" {statistics.median(r.seconds for r in got):.2f} s, CPU"
                f" {statistics.median(r.cpu for r in got):.2f} s, server"
                f" {statistics.median(r.server_cpu for r in got):.2f} s"
            )
        pairs = zip(runs[(old, case)], runs[(new, case)], strict=True)
        paired = statistics.median(b.seconds / a.seconds for a, b in pairs)
        print(f"{case:<14} paired new/old wall: {paired:.3f}")


if __name__ == "__main__":
    main()
