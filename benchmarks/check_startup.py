"""Wall time of `pakman check` on the rails config, against a bare Python start-up.

Run: python benchmarks/check_startup.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "fixtures" / "v8" / "rails.yml"


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    pakman = [sys.executable, "-m", "pakman.cli", "check", "--config", str(CONFIG)]
    check = timed(pakman, runs)
    bare = timed([sys.executable, "-c", "pass"], runs)
    yaml_only = timed([sys.executable, "-c", "import yaml"], runs)
    print(f"pakman check (rails.yml), median of {runs}: {check * 1000:.0f} ms (target < 300 ms)")
    print(f"python -c pass:                 {bare * 1000:.0f} ms")
    print(f"python -c 'import yaml':        {yaml_only * 1000:.0f} ms")
    print(f"ratio check / bare python:      {check / bare:.2f}x")


if __name__ == "__main__":
    main()
