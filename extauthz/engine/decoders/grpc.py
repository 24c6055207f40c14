"""gRPC bodies (``application/grpc``, gRPC-Web ``application/grpc-web[+proto]``, and
``application/grpc-web-text``, base64): the length-prefixed frames Envoy forwards with
``with_request_body.pack_as_bytes: true``.

Two steps, because the message type comes from the route, not the body:

1. ``decode`` (the body phase, by media type) splits the frames; it needs nothing but bytes.
   Malformed: a gRPC-Web trailer frame (flag 0x80) in a request, a reserved flag bit,
   invalid base64. A last frame cut short (its header, or a length that runs past the body)
   is noted (``Frames.cut``) and refused in step 2, unless a streaming route checks the start
   of a stream the proxy cut at its buffer.
2. ``message`` (the pipeline, once the route is known) turns the frames into the method's
   request message as its JSON mapping, through the route's ``GrpcMethod`` (compiled from a
   descriptor set at policy load; the protobuf code lives outside the engine). Decisions:

   - a unary method takes exactly one frame; none, or more than one, is malformed;
   - a client- or bidi-streaming method is refused (``contract.grpcStreaming``): Envoy
     buffers only the start of a stream, so later messages would pass unchecked. A route that
     says ``streaming: firstMessage`` accepts it and checks every whole message buffered (at
     least the first); what follows the buffer is not seen;
   - a compressed frame (flag 1) is inflated per ``grpc-encoding`` (``gzip``, ``deflate``),
     at most ``max_bytes`` out; ``identity`` with the flag set, an unknown or missing
     encoding, or output past the limit is malformed;
   - no route method (an unmatched call, a route without ``grpc``): the body stays opaque.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..checks.contract import GRPC_STREAMING
from ._base import GRPC, JSON, MALFORMED, OPAQUE, Decoder, ParsedBody

__all__ = ["DECODER", "GRPC_MEDIA_TYPES", "Frames", "GrpcMethod", "decode", "message"]

_WEB_TEXT = ("application/grpc-web-text", "application/grpc-web-text+proto")
GRPC_MEDIA_TYPES = (
    "application/grpc",
    "application/grpc+proto",
    "application/grpc-web",
    "application/grpc-web+proto",
    *_WEB_TEXT,
)
_HEADER = 5  # flags (1 byte) + big-endian length (4 bytes)


@dataclass(frozen=True, slots=True)
class Frames:
    """The whole frames of one body, in order: (compressed flag, payload)."""

    frames: tuple[tuple[bool, bytes], ...]
    cut: str | None = None  # why the last frame is incomplete (a stream the proxy cut short)


class GrpcMethod(Protocol):
    """A route's gRPC method, compiled at policy load (``policy._grpc``)."""

    @property
    def path(self) -> str: ...  # "/pkg.Service/Method"

    @property
    def streaming(self) -> bool: ...  # client or bidi streaming

    @property
    def first_message(self) -> bool: ...  # a streaming call: check what is buffered

    def decode(self, payload: bytes, max_depth: int) -> ParsedBody:
        """The message as a JSON ``ParsedBody`` (``problems``: unknown fields, constraint
        violations), or MALFORMED / TOO_DEEP; never raises."""
        ...


def _unbase64(raw: bytes) -> bytes | None:
    """gRPC-Web text: base64, possibly several padded chunks one after another."""
    text = b"".join(raw.split())
    out: list[bytes] = []
    start = 0
    try:
        while start < len(text):
            end = text.find(b"=", start)
            if end < 0:
                chunk, start = text[start:], len(text)
            else:
                end += 1
                while end < len(text) and text[end : end + 1] == b"=":
                    end += 1
                chunk, start = text[start:end], end
            out.append(binascii.a2b_base64(chunk, strict_mode=True))
    except (binascii.Error, ValueError):
        return None
    return b"".join(out)


def decode(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
    media = content_type.partition(";")[0].strip().lower()
    if media in _WEB_TEXT:
        decoded = _unbase64(raw)
        if decoded is None:
            return ParsedBody(MALFORMED, error="gRPC-Web text body is not valid base64")
        raw = decoded
    frames: list[tuple[bool, bytes]] = []
    at, size = 0, len(raw)
    while at < size:
        if size - at < _HEADER:
            cut = f"gRPC frame header cut short at byte {at} ({size - at} of 5)"
            return ParsedBody(GRPC, Frames(tuple(frames), cut))
        flags = raw[at]
        length = int.from_bytes(raw[at + 1 : at + 5], "big")
        if flags & 0x80:
            return ParsedBody(MALFORMED, error=f"gRPC-Web trailer frame in a request at byte {at}")
        if flags & 0x7E:
            return ParsedBody(MALFORMED, error=f"gRPC frame flags 0x{flags:02x} at byte {at}")
        at += _HEADER
        if length > size - at:
            cut = f"gRPC frame at byte {at - _HEADER} says {length} bytes; {size - at} follow"
            return ParsedBody(GRPC, Frames(tuple(frames), cut))
        frames.append((bool(flags & 1), raw[at : at + length]))
        at += length
    return ParsedBody(GRPC, Frames(tuple(frames)))


def _inflate(payload: bytes, encoding: str, max_bytes: int) -> bytes | str:
    """The payload of a compressed frame, or why not."""
    if encoding in ("gzip", "deflate"):
        wbits = 31 if encoding == "gzip" else 15
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(payload, max_bytes + 1)
        except zlib.error as exc:
            return f"gRPC frame does not inflate as {encoding}: {exc}"
        if len(out) > max_bytes:
            return f"gRPC frame inflates past {max_bytes} bytes"
        if not inflater.eof or inflater.unused_data:
            return f"gRPC frame is not one whole {encoding} stream"
        return out
    if not encoding or encoding == "identity":
        return "compressed gRPC frame without a grpc-encoding"
    return f"unsupported grpc-encoding {encoding[:40]!r} (gzip, deflate, identity)"


def message(
    parsed: ParsedBody,
    method: GrpcMethod | None,
    headers: Mapping[str, str],
    partial: bool,
    max_depth: int,
    max_bytes: int,
) -> ParsedBody:
    """The request message of ``parsed`` (a GRPC body) as the route's method reads it;
    ``partial``: the proxy cut the body at its buffer (a stream's start)."""
    frames: Frames = parsed.value
    if frames.cut is not None and not (
        method is not None and method.streaming and method.first_message and partial
    ):
        if partial:  # cut by the proxy's buffer, not by the client: say what to raise
            return ParsedBody(
                MALFORMED,
                error=f"{frames.cut}: the body was truncated by the proxy (partial) and cannot "
                "be checked; raise Envoy's with_request_body.max_request_bytes to the policy's "
                "maxBodyBytes",
            )
        return ParsedBody(MALFORMED, error=frames.cut)
    if method is None:
        return ParsedBody(OPAQUE)
    count = len(frames.frames)
    if method.streaming:
        if not method.first_message:
            return ParsedBody(GRPC, problems=(_streaming(method.path),))
        if count == 0:
            return ParsedBody(MALFORMED, error="a gRPC stream without a whole message")
    elif count != 1:
        return ParsedBody(
            MALFORMED, error=f"a unary gRPC call carries exactly one message frame, not {count}"
        )
    encoding = headers.get("grpc-encoding", "").strip().lower()
    result: ParsedBody | None = None
    problems: list[tuple[str, str]] = []
    for i, (compressed, payload) in enumerate(frames.frames):
        if compressed:
            inflated = _inflate(payload, encoding, max_bytes)
            if isinstance(inflated, str):
                return ParsedBody(MALFORMED, error=inflated)
            payload = inflated
        one = method.decode(payload, max_depth)
        if one.kind != JSON:
            if count > 1 and one.error:
                one.error = f"message {i + 1}: {one.error}"
            return one
        problems.extend(one.problems)
        if result is None:
            result = one
    assert result is not None
    result.problems = tuple(problems)
    result.stream_start = method.streaming and partial
    return result


def _streaming(path: str) -> tuple[str, str]:
    return (
        GRPC_STREAMING,
        f"{path} is a streaming method; the policy checks unary calls only (a route may say "
        "streaming: firstMessage)",
    )


# A cut frame is refused by ``message`` (which knows the method), not blamed on the proxy here.
DECODER = Decoder("grpc", GRPC_MEDIA_TYPES, decode, rank=20, whole_body=False)
