"""The ``pakman`` command run by ``python -c PEAK_RSS <args>``, printing its peak RSS in
KiB as the last line of stderr: VmHWM belongs to this process image alone (ru_maxrss would
include the forking parent). Shared by the memory tests and the benchmarks."""

PEAK_RSS = """
import os, re, sys
from pakman.cli import main
status = main(sys.argv[1:])
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
print(peak.group(1), file=sys.stderr)
sys.stderr.flush()
os._exit(status)
"""
