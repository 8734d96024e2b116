"""The documentation the tests hold to its claims: README.md and every page of docs/."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def paths() -> list[Path]:
    """README.md, then every docs/*.md page."""
    return [README, *sorted(DOCS.glob("*.md"))]


def pages() -> dict[str, str]:
    """Each page's text by its file name (README.md, dagger.md, ...)."""
    return {path.name: path.read_text() for path in paths()}


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The shell commands of a block: continuation lines joined, comments dropped, split at
    ``&&``, ``||``, ``;`` and ``|``."""
    found: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|"):
                if current:
                    found.append(current)
                current = []
            else:
                current.append(word)
    return found
