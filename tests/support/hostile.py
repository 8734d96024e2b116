"""For hostile-input tests of every subject: a secret to look for in any output, one key made
once, and the CLI wrapped to print its peak memory."""

from __future__ import annotations

from pakman import keys

SECRET = "hardening-SECRET-value-42"


KEY = keys.generate(2048)
