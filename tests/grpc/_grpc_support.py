"""Helpers of the gRPC tests (a module of its own: test modules import it, not a conftest,
which would be ambiguous beside the other test folders' conftests)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from extauthz.context import RequestContext


def frame(payload: bytes, flags: int = 0) -> bytes:
    """One gRPC length-prefixed message."""
    return bytes([flags]) + struct.pack(">I", len(payload)) + payload


Ctx = Callable[..., RequestContext]
