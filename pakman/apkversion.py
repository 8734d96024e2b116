"""apk's version order for ``pkgver-rN`` strings, as ``apk version -t`` decides it.

The Gentoo rules apk inherits: numeric components (after the first, one with a leading
zero compares as text), an optional letter, suffixes (``_alpha``,
``_beta``, ``_pre``, ``_rc`` before the release, ``_cvs``, ``_svn``, ``_git``, ``_hg``,
``_p`` after it, each with an optional number), an optional commit hash (``~`` and
lowercase hex: after the suffixes, before the revision; any hash is newer than none,
two compare as text) and the ``-rN`` revision. General version
libraries order these differently (none knows ``_git``), and the repository must keep
what hosts will pick; tests check the order against the real apk.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_SUFFIX_RANK = {
    "alpha": -4,
    "beta": -3,
    "pre": -2,
    "rc": -1,
    "cvs": 1,
    "svn": 2,
    "git": 3,
    "hg": 4,
    "p": 5,
}
_VERSION = re.compile(
    r"(?P<numbers>\d+(?:\.\d+)*)(?P<letter>[a-z]?)"
    r"(?P<suffixes>(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*)"
    r"(?:~(?P<hash>[0-9a-f]+))?"
    r"(?:-r(?P<revision>\d+))?"
)
_SUFFIX = re.compile(r"_(alpha|beta|pre|rc|cvs|svn|git|hg|p)(\d*)")


@dataclass(frozen=True)
class _Parsed:
    numbers: tuple[str, ...]
    letter: str
    suffixes: tuple[tuple[int, int], ...]
    hash: str | None
    revision: int


def valid(version: str) -> bool:
    """Whether apk would accept ``version``."""
    return _VERSION.fullmatch(version) is not None


def _parse(version: str) -> _Parsed:
    found = _VERSION.fullmatch(version)
    if found is None:
        raise ValueError(f"not an apk version: {version!r}")
    suffixes = tuple(
        (_SUFFIX_RANK[name], int(number) if number else -1)  # _p < _p0
        for name, number in _SUFFIX.findall(found["suffixes"])
    )
    return _Parsed(
        tuple(found["numbers"].split(".")),
        found["letter"],
        suffixes,
        found["hash"],
        int(found["revision"] or 0),
    )


def _sign(a: int | str | tuple[int, int], b: int | str | tuple[int, int]) -> int:
    return int(a > b) - int(a < b)  # type: ignore[operator]


def _numbers(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    first = _sign(int(a[0]), int(b[0]))
    if first:
        return first
    for x, y in zip(a[1:], b[1:], strict=False):
        as_text = x.startswith("0") or y.startswith("0")  # as text: 01 < 1, 0 < 00
        order = _sign(x, y) if as_text else _sign(int(x), int(y))
        if order:
            return order
    return _sign(len(a), len(b))  # 1.0 < 1.0.0


def _suffixes(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> int:
    for x, y in zip(a, b, strict=False):
        order = _sign(x, y)
        if order:
            return order
    if len(a) == len(b):
        return 0
    longer, sign = (a, 1) if len(a) > len(b) else (b, -1)
    extra = longer[min(len(a), len(b))]
    return -sign if extra[0] < 0 else sign  # a pre-release suffix comes before the release


def _hashes(a: str | None, b: str | None) -> int:
    if a is None or b is None:
        return _sign(a is not None, b is not None)  # a hash is newer than none
    return _sign(a, b)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older than, equal to or newer than ``b``."""
    pa, pb = _parse(a), _parse(b)
    return (
        _numbers(pa.numbers, pb.numbers)
        or _sign(pa.letter, pb.letter)
        or _suffixes(pa.suffixes, pb.suffixes)
        or _hashes(pa.hash, pb.hash)
        or _sign(pa.revision, pb.revision)
    )


def _compare_any(a: str, b: str) -> int:
    """:func:`compare`, with versions apk refuses (an index written before they were
    refused may hold some) older than every valid one, and among themselves as text."""
    va, vb = valid(a), valid(b)
    if va and vb:
        return compare(a, b)
    return _sign(va, vb) or _sign(a, b)


version_key = functools.cmp_to_key(_compare_any)
