"""Protobuf's base-128 varint, the one piece of its wire format the adapters write by hand
(``request.py`` rewrites a message's length-delimited fields, ``response.py`` assembles an
ALLOW answer from constant bytes)."""

from __future__ import annotations


def encode_varint(n: int) -> bytes:
    """``n`` (non-negative) as a protobuf varint."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths below 2048 (nearly all of them) are a table look-up: the loop costs 4x more.
_VARINTS = tuple(encode_varint(n) for n in range(2048))


def varint(n: int) -> bytes:
    """``encode_varint``, from a table for the small values a length usually is."""
    return _VARINTS[n] if n < 2048 else encode_varint(n)
