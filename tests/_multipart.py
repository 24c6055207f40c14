"""multipart/form-data bodies for tests: one part, and the parts closed into a body."""

from __future__ import annotations


def part(
    boundary: str, name: str, value: bytes, filename: str | None = None, ctype: str | None = None
) -> bytes:
    """One part: its delimiter, Content-Disposition (and Content-Type), the value."""
    head = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        head += f'; filename="{filename}"'
    head += "\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
    return f"--{boundary}\r\n{head}\r\n".encode() + value + b"\r\n"


def multipart(boundary: str, *parts: bytes) -> bytes:
    """The parts, then the closing delimiter."""
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
