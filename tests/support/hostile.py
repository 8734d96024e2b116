"""For hostile-input tests of every subject: a secret to look for in any output, one key made
once, and the CLI wrapped to print its peak memory."""

from __future__ import annotations

from pakman import keys

SECRET = "hardening-SECRET-value-42"


KEY = keys.generate(2048)


# Runs the CLI and prints its peak RSS in KiB: VmHWM belongs to this process image alone
# (ru_maxrss would include the forking pytest process).
PEAK_RSS = """
import re, sys
from pakman.cli import main
status = main(sys.argv[1:])
status_text = open("/proc/self/status").read()
print(re.search(r"VmHWM:\\s+(\\d+) kB", status_text).group(1), file=sys.stderr)
sys.exit(status)
"""
