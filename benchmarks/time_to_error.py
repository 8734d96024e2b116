"""Time to the error: how long publish takes to refuse a bad option on a large tree.

Builds a ~2 GiB packages tree (32 files of 64 MiB of random bytes under acme/x86_64/)
and times ``pakman publish`` with a bucket name S3 would refuse and with no credentials,
against the floor of the same interpreter starting ``pakman --version``. Verification is
skipped (``--no-verify``: the files are not real packages), so a late check pays for
hashing and zipping the tree; with verification it pays for that as well.

Given an older checkout (``git worktree add /tmp/old <commit>``), it times that too:
the before and after of checking options first.

Run: python benchmarks/time_to_error.py [--before /tmp/old] [--gib 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 64 * 1024 * 1024
CASES = {
    "bad bucket name": (["--bucket", "Bad_Bucket"], {}, "--bucket: not a valid S3 bucket name"),
    "no credentials": (
        ["--bucket", "releases", "--endpoint", "http://127.0.0.1:9"],
        {"AWS_EC2_METADATA_DISABLED": "true"},
        "no credentials",
    ),
}


def make_tree(top: Path, gib: float) -> int:
    folder = top / "acme" / "x86_64"
    folder.mkdir(parents=True)
    block = os.urandom(BLOCK)
    count = max(1, round(gib * 1024**3 / BLOCK))
    for index in range(count):
        (folder / f"app{index:03d}-1.0.0-r0.apk").write_bytes(block)
    return count * BLOCK


def timed(checkout: Path, args: list[str], env: dict[str, str], expected: str, runs: int) -> float:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "GITHUB_", "ABUILD_")) or k == "AWS_CA_BUNDLE"
    }
    full_env = {**clean, **env, "PYTHONPATH": str(checkout)}
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pakman.cli", *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=checkout,  # `-m` puts the current folder first on the path
            check=False,
        )
        samples.append(time.perf_counter() - start)
        if expected and (result.returncode == 0 or expected not in result.stderr):
            raise SystemExit(f"{checkout}: unexpected answer: {result.returncode} {result.stderr}")
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--gib", type=float, default=2.0, help="tree size (default: 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    options = parser.parse_args()
    checkouts = {"after": ROOT}
    if options.before:
        checkouts = {"before": options.before.resolve(), **checkouts}
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp:
        tree = Path(tmp) / "packages"
        size = make_tree(tree, options.gib)
        home = {"HOME": tmp, "AWS_SHARED_CREDENTIALS_FILE": str(Path(tmp) / "none")}
        floor = timed(ROOT, ["--version"], {}, "", options.runs)
        print(f"tree: {size / 1024**3:.2f} GiB; floor (pakman --version): {floor:.2f} s")
        print(f"{'case':<18}" + "".join(f"{name:>10}" for name in checkouts) + "  after/floor")
        for case, (extra, env, expected) in CASES.items():
            args = [
                "publish", str(tree), "--no-verify", "--repository", "acme/app",
                "--sha", "a" * 40, *extra,
            ]  # fmt: skip
            figures = {
                name: timed(path, args, {**env, **home}, expected, options.runs)
                for name, path in checkouts.items()
            }
            line = f"{case:<18}" + "".join(f"{figures[n]:>9.2f}s" for n in checkouts)
            line += f"  {figures['after'] / floor:>10.1f}x"
            if "before" in figures:
                line += f"  (before/after {figures['before'] / figures['after']:.0f}x)"
            print(line)


if __name__ == "__main__":
    main()
