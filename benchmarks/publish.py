"""Verified pakman publish against awscli and s5cmd, on the same data and the same real S3
server (versitygw, as the tests use it) on 127.0.0.1.

Data: real signed packages (devkit/apkfactory.py): N packages of about 200 KB and one big
package (150 MB by default), their signed indexes, and their packages.zip from merge.
pakman runs as a user runs it: with verification (`--key`) and the zip from merge.

- first publish against `s5cmd cp` (target <= 1.2x) and `aws s3 cp --recursive` (target
  <= 0.9x) of the same tree and zip: the fastest copy clients, which check nothing;
- unchanged re-publish against the floor (target <= 2.5x): `openssl dgst -sha256` of every
  shipped byte (the tree and the zip) in 2 processes, as a verified re-publish must read
  and hash them all; also per round, against the floor measured right before and after
  it (the load of a shared machine drifts between rounds), and in CPU seconds; `aws s3
  sync` and `s5cmd sync` (which read no file, trusting sizes and times) and pakman without
  `--archive` (which zips afresh) are printed beside it;
- peak memory (VmHWM) of pakman publish.

Each round makes fresh buckets and rotates the tools' order; figures are medians. pakman's
modules are byte-compiled first, as an installed pakman's are (awscli's are too). The CPU
seconds of each tool and of the server during its run are printed beside the times: on a
small machine the server's share decides the wall time.

Run: python benchmarks/publish.py [packages] [big MB] [rounds]
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.apkfactory import SigningKey, make_package, write_repo
from devkit.peak_rss import PEAK_RSS
from devkit.s3 import versitygw_server
from devkit.tools import find_tool
from pakman import keys, merge


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    seconds: float
    cpu: float  # the tool's own CPU seconds
    server_cpu: float  # the S3 server's CPU seconds meanwhile
    stderr: str


def timed(cmd: list[str], env: dict[str, str], server: int) -> Run:
    cpu, served = children_cpu(), server_cpu(server)
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {result.stderr[-800:]}")
    return Run(elapsed, children_cpu() - cpu, server_cpu(server) - served, result.stderr)


def tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        raise SystemExit(f"{name} is not installed: bash scripts/test.sh installs it")
    return path


FLOOR_CPU: list[float] = []  # the CPU seconds of each floor measured


def floor(openssl: str, files: list[Path]) -> float:
    """Seconds for 2 ``openssl dgst -sha256`` processes, side by side, to hash ``files``
    split into two halves of about the same size: the least a verified re-publish reads."""
    halves: tuple[list[str], list[str]] = ([], [])
    sizes = [0, 0]
    for path in sorted(files, key=lambda p: p.stat().st_size, reverse=True):
        lighter = sizes.index(min(sizes))
        halves[lighter].append(str(path))
        sizes[lighter] += path.stat().st_size
    cpu = children_cpu()
    start = time.perf_counter()
    running = [
        subprocess.Popen([openssl, "dgst", "-sha256", *half], stdout=subprocess.DEVNULL)
        for half in halves
        if half
    ]
    if any(process.wait() != 0 for process in running):
        raise SystemExit("openssl dgst failed")
    elapsed = time.perf_counter() - start
    FLOOR_CPU.append(children_cpu() - cpu)
    return elapsed


def empty(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def generate(data: Path, count: int, big_mb: int) -> Path:
    """The tree under data/packages, the zip at data/packages.zip; returns the public key."""
    key = SigningKey(keys.generate(4096), "acme-app.rsa.pub")
    for arch in ("x86_64", "aarch64"):
        built = [
            make_package(key, f"pkg{i:03d}", "1.0.0-r0", arch, files={"blob": os.urandom(200_000)})
            for i in range(count // 2)
        ]
        if arch == "x86_64" and big_mb:
            blob = os.urandom(big_mb * 1024 * 1024)
            built.append(make_package(key, "big", "1.0.0-r0", arch, files={"blob": blob}))
        write_repo(data / "packages" / "acme", key, built, arch)
    merge.write_zip(merge.collect([data / "packages"]), data / "packages.zip")
    return key.write_public(data.parent / "keys")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    big_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    # As installed: pip byte-compiles a wheel's modules, an editable checkout has none.
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "pakman", quiet=1)
    tool("versitygw")
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp, versitygw_server() as s3:
        data = Path(tmp) / "data"
        public = generate(data, count, big_mb)
        total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        client = s3.client()
        env = {
            **os.environ,
            **s3.env(),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        print(
            f"data: {count} packages of 200 KB + one of {big_mb} MB, signed, with indexes,"
            f" + packages.zip = {total / 1e6:.0f} MB; versitygw on 127.0.0.1;"
            f" cores: {os.cpu_count()}"
        )
        print(f"rounds: {rounds}, order rotated, fresh buckets, medians")

        def pakman(bucket: str, archive: bool = True) -> list[str]:
            return [
                sys.executable,
                "-c",
                PEAK_RSS,
                "publish",
                str(data / "packages"),
                *(["--archive", str(data / "packages.zip")] if archive else []),
                "--key",
                str(public),
                "--bucket",
                bucket,
                "--repository",
                "acme/app",
                "--sha",
                "0" * 40,
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

        def s5cmd(verb: str, bucket: str) -> list[str]:
            return [
                tool("s5cmd"),
                "--endpoint-url",
                s3.endpoint,
                verb,
                f"{data}/*",
                f"s3://{bucket}/run/",
            ]

        first: dict[str, list[Run]] = {
            "pakman publish": [],
            "aws s3 cp --recursive": [],
            "s5cmd cp": [],
        }
        again: dict[str, list[Run]] = {"pakman publish": [], "aws s3 sync": [], "s5cmd sync": []}
        made = "pakman, no --archive"  # zips the tree again: nothing is kept between runs
        again[made] = []
        peaks: list[int] = []
        floors: list[float] = []
        per_round: list[float] = []  # each round's re-publish / the floor beside it
        shipped = [p for p in data.rglob("*") if p.is_file()]  # the tree and the zip
        openssl = tool("openssl")
        for round_ in range(rounds):
            jobs: list[tuple[str, Callable[[str], list[str]]]] = [
                ("pakman publish", pakman),
                ("aws s3 cp --recursive", lambda b: aws("cp", b)),
                ("s5cmd cp", lambda b: s5cmd("cp", b)),
            ]
            jobs = jobs[round_ % 3 :] + jobs[: round_ % 3]
            buckets: dict[str, str] = {}
            for name, command in jobs:
                bucket = f"b{round_}-{len(buckets)}"
                client.create_bucket(Bucket=bucket)
                buckets[name] = bucket
                run = timed(command(bucket), env, s3.pid)
                first[name].append(run)
                if name == "pakman publish":
                    peaks.append(int(run.stderr.strip().splitlines()[-1]))
            no_archive = pakman(buckets["pakman publish"], archive=False)
            unchanged = [
                ("pakman publish", pakman(buckets["pakman publish"]), env),
                ("aws s3 sync", aws("sync", buckets["aws s3 cp --recursive"]), env),
                ("s5cmd sync", s5cmd("sync", buckets["s5cmd cp"]), env),
                (made, no_archive, env),
            ]
            for name, argv, run_env in unchanged[round_ % 4 :] + unchanged[: round_ % 4]:
                before = floor(openssl, shipped) if name == "pakman publish" else 0.0
                again[name].append(timed(argv, run_env, s3.pid))
                if name == "pakman publish":
                    # The floor right before and after: on a shared machine the load
                    # drifts between rounds, so each round's re-publish is set against
                    # the floor of its own moment as well.
                    beside = (before + floor(openssl, shipped)) / 2
                    floors.append(beside)
                    per_round.append(again[name][-1].seconds / beside)
            # Each round leaves 1.2 GB in the server's folder: emptied and written back
            # between rounds, or later rounds measure the disk's writeback more than the tools.
            for bucket in buckets.values():
                empty(client, bucket)
            os.sync()

        def report(label: str, runs: dict[str, list[Run]]) -> dict[str, float]:
            medians = {}
            for name, done in runs.items():
                seconds = statistics.median(r.seconds for r in done)
                cpu = statistics.median(r.cpu for r in done)
                served = statistics.median(r.server_cpu for r in done)
                medians[name] = seconds
                print(
                    f"{label:<14}{name:<22} {seconds:6.2f} s  CPU: tool {cpu:5.2f} s,"
                    f" server {served:5.2f} s"
                )
            return medians

        med = report("first publish", first)
        med_again = report("unchanged", again)
        med_again["floor"] = statistics.median(floors)
        print(f"{'floor':<14}{'openssl dgst -sha256, 2 processes':<22} {med_again['floor']:6.2f} s")
        ratios: list[tuple[str, dict[str, float], str, float | None]] = [
            ("first publish (verified) / s5cmd cp", med, "s5cmd cp", 1.2),
            ("first publish (verified) / aws s3 cp", med, "aws s3 cp --recursive", 0.9),
            ("re-publish (verified) / floor", med_again, "floor", 2.5),
            ("re-publish (verified) / aws s3 sync", med_again, "aws s3 sync", None),
            ("re-publish (verified) / s5cmd sync", med_again, "s5cmd sync", None),
        ]
        for label, table, peer, target in ratios:
            ratio = table["pakman publish"] / table[peer]
            goal = f"(target <= {target}x)" if target else "(reads no file: no target)"
            print(f"ratio {label:<38} {ratio:5.2f}x {goal}")
        rounds_ratio = statistics.median(per_round)
        print(
            f"ratio {'re-publish / floor beside it, per round':<38} {rounds_ratio:5.2f}x"
            f" (median of {', '.join(f'{r:.2f}' for r in per_round)})"
        )
        cpu_ratio = statistics.median(r.cpu for r in again["pakman publish"]) / statistics.median(
            FLOOR_CPU
        )
        print(
            f"ratio {'re-publish CPU / floor CPU':<38} {cpu_ratio:5.2f}x"
            f" (floor CPU {statistics.median(FLOOR_CPU):.2f} s; least affected by the load)"
        )
        print(f"pakman publish peak RSS: {max(peaks) / 1024:.0f} MiB (largest file {big_mb} MB)")


if __name__ == "__main__":
    main()
