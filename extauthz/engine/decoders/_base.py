"""What a body decoder is, what it returns, and the steps decoders share.

A decoder turns the raw bytes of one media type into the value the checks read, in bounded
time, and never raises: invalid input is a ``MALFORMED`` result with a reason, input past a
limit a refusal (``TOO_DEEP``). The body phase (``engine/body.py``) does what is the same for
every decoder: the size gate, choosing the decoder by media type, blaming a failure on a
truncated body, and sniffing bodies sent under another label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

NONE = "none"
JSON = "json"
FORM = "form"
MULTIPART = "multipart"  # value: text fields as FORM's are; ``parts``: every part
OPAQUE = "opaque"
MALFORMED = "malformed"
TOO_DEEP = "too_deep"
SKIPPED = "skipped"  # oversize: not parsed (or its content coding expands past the limit)
UNSUPPORTED = "unsupported"  # a Content-Encoding the policy does not decode: refused (415)
GRPC = "grpc"  # value: ``grpc.Frames``, until the route's method makes it JSON (``grpc.message``)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a ``multipart/form-data`` body."""

    name: str
    filename: str | None  # None: no ``filename`` parameter (a field, not a file)
    content_type: str  # the part's Content-Type as sent, "" when absent
    data: bytes
    text: str | None  # ``data`` as UTF-8 for a part without a filename, else None


@dataclass(slots=True)  # per-request and never shared: not frozen, for a cheaper __init__
class ParsedBody:
    kind: str
    value: Any = None
    error: str | None = None  # why the body is malformed
    depth: int = -1  # JSON depth when known from the pre-scan, -1 when not measured
    form_pairs: tuple[tuple[str, str], ...] = ()
    sniffed: bool = False  # JSON found in a body not declared as JSON (contract still refuses it)
    parts: tuple[Part, ...] = ()  # MULTIPART: every part, files included, in order
    # (hit id, message) the decoding found beyond the syntax: a gRPC message's unknown fields
    # and constraint violations; the pipeline reports them in the contract phase
    problems: tuple[tuple[str, str], ...] = ()
    grpc: bool = False  # JSON: the mapping of a gRPC request message
    # The start of a gRPC stream that a ``streaming: firstMessage`` route checks: cut by the
    # proxy's buffer by design, so the partial-body limit does not refuse it.
    stream_start: bool = False
    # What the detectors read when it is not ``value``: every value of a repeated key (a list
    # in its place), JSON text found in a form, values after the first of a JSON text, or the
    # text of a body that does not parse. None: ``value`` itself (the usual case).
    inspect: Any = None
    # Dotted names of keys the body repeats (JSON object keys, form and multipart fields):
    # upstreams differ on which value wins, so a contract-checked route refuses them.
    duplicates: tuple[str, ...] = ()
    # Why JSON parsed only leniently (a byte order mark, UTF-16/32, NaN/Infinity, data after
    # the value): parsers disagree, so a route whose contract reads the body refuses it.
    lenient: str | None = None


NO_BODY = ParsedBody(NONE)

# ``decode(raw, content_type, max_depth, max_bytes)``: ``content_type`` is the declared type
# that chose the decoder, parameters included ("" when sniffed); ``max_bytes`` bounds whatever
# a decoder expands (``raw`` itself is already within it).
Decode = Callable[[bytes, str, int, int], ParsedBody]


@dataclass(frozen=True, slots=True)
class Decoder:
    """One body format: a module of this package defines ``DECODER = Decoder(...)``.

    Sketch of a new one (``extauthz/engine/decoders/ndjson.py``)::

        def decode(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
            ...  # never raises: ParsedBody(MALFORMED, error=...) for bad input
            return ParsedBody(JSON, rows)

        DECODER = Decoder("ndjson", ("application/x-ndjson",), decode)

    ``decode`` is stored as a field, not a method: the body phase calls it without binding.
    """

    name: str
    #: Media types it decodes, lower case, without parameters.
    media_types: tuple[str, ...]
    decode: Decode
    #: Structured syntax suffixes it decodes (RFC 6839): ``("json",)`` takes ``*/*+json``.
    suffixes: tuple[str, ...] = ()
    #: When repeated Content-Type headers name several decoders, the lowest rank decodes.
    rank: int = 100
    #: Bytes that look like its format under another label (or none) are decoded too,
    #: marked ``sniffed``; a malformed result is then ignored (the body stays opaque).
    sniff: Callable[[bytes], object] | None = None
    #: A truncated (``partial``) body cannot be decoded: a malformed result says so.
    whole_body: bool = False


# A string literal, or an unterminated one running to the end: every match attempt that starts at
# a quote succeeds, so an escaped quote is never a new starting point (no quadratic restarts).
_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(raw: bytes) -> int:
    """Maximum bracket nesting outside strings; linear time, no recursion.

    The pre-scan every decoder that reads JSON text runs before handing it to a parser.
    """
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return raw.count(b"[") + raw.count(b"{")
    stripped = _NOT_BRACKET.sub(b"", _STRINGS.sub(b"", raw) if b'"' in raw else raw)
    if not stripped:
        return 0
    steps = stripped.translate(_DEPTH_STEP)
    return max(0, max(accumulate(1 if b == 1 else -1 for b in steps)))
