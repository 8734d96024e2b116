"""The engine's path patterns (Ignore, filter, exclude), modelled on buildkit's
patternmatcher as dagger v0.21 uses it. Test code."""

from __future__ import annotations

import re


def engine_ignores(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """The engine's exclude rule (buildkit's patternmatcher, ``MatchesOrParentMatches``):
    patterns in order, each matching the whole path relative to the source or one of its
    parent folders, `*` and `?` within one name, `**` across folders; a `!` pattern takes
    a path matched so far back in."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        return re.compile(out)

    names = path.split("/")
    prefixes = ["/".join(names[: i + 1]) for i in range(len(names))]
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if negated != matched:
            continue
        body = pattern[1:] if negated else pattern
        if any(regex(body).fullmatch(prefix) for prefix in prefixes):
            matched = not negated
    return matched
