"""Stand-ins for an asyncio transport, to drive a server's protocol object without a socket.

What the HTTP/1.1 (``server/http_server``) and HTTP/2 (``server/h2_server``) connections use
of a transport, for the tests and the in-process benches (``bench/door_stages.py``,
``bench/grpc_transport_bench.py``).
"""

from __future__ import annotations

from typing import Any


class NullTransport:
    """Drops what is written: a bench counts the server's work, not the transport's."""

    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is taken at once

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class RecordingTransport(NullTransport):
    """Keeps what is written (``written``, or ``take()`` since the last take); a write after
    ``close()`` fails the test."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        assert not self.closed, "a write after close"
        self.written += data

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data
