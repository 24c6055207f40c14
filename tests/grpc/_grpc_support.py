"""Helpers of the gRPC tests (a module of its own: test modules import it, not a conftest,
which would be ambiguous beside the other test folders' conftests)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from extauthz.context import RequestContext


def varint(n: int) -> bytes:
    """A protobuf varint, written here (not the adapters' encoder) for messages built by hand."""
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def frame(payload: bytes, flags: int = 0) -> bytes:
    """One gRPC length-prefixed message."""
    return bytes([flags]) + struct.pack(">I", len(payload)) + payload


Ctx = Callable[..., RequestContext]
