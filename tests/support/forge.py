"""CRC-32 forgery, as anyone can do it: other bytes, same size, same CRC-32s.

CRC-32 is affine over GF(2): flipping a set of bits changes it by the XOR of what each
flip alone does. So after any change, flipping the right bits among the next few bytes
brings every CRC-32 asked for back to its old value. This is why pakman compares SHA-256
wherever bytes decide trust, and uses CRC-32 only as a transfer checksum.
"""

from __future__ import annotations

from collections.abc import Callable


def _combination(effects: list[int], target: int) -> int:
    """A set of ``effects`` (as a bit mask of their indexes) whose XOR is ``target``."""
    basis: list[tuple[int, int]] = []  # (vector, mask), highest bit first, all distinct
    for index, vector in enumerate(effects):
        mask = 1 << index
        for base, base_mask in basis:
            if vector ^ base < vector:
                vector, mask = vector ^ base, mask ^ base_mask
        if vector:
            basis.append((vector, mask))
            basis.sort(reverse=True)
    chosen = 0
    for base, base_mask in basis:
        if target ^ base < target:
            target, chosen = target ^ base, chosen ^ base_mask
    assert target == 0, "the window is too narrow for these checks"
    return chosen


def forge(data: bytes, at: int, checks: Callable[[bytes], int], width: int = 12) -> bytes:
    """``data`` with the byte at ``at`` changed and bits of the ``width`` bytes after it
    flipped so that ``checks`` (CRC-32s packed in one int) gives what it gave before."""
    out = bytearray(data)
    out[at] ^= 0xFF
    changed = checks(bytes(out))
    effects = []
    for bit in range(width * 8):
        out[at + 1 + bit // 8] ^= 1 << (bit % 8)
        effects.append(checks(bytes(out)) ^ changed)
        out[at + 1 + bit // 8] ^= 1 << (bit % 8)
    flips = _combination(effects, changed ^ checks(data))
    for bit in range(width * 8):
        if flips >> bit & 1:
            out[at + 1 + bit // 8] ^= 1 << (bit % 8)
    forged = bytes(out)
    assert forged != data
    assert len(forged) == len(data)
    assert checks(forged) == checks(data)
    return forged
