"""Content codings (``Content-Encoding``): undone before a decoder reads the body, bounded.

Some upstreams inflate a compressed request body themselves (Express ``body-parser`` does by
default), so the checks must read the decoded bytes, not the compressed ones (issue 24).
``gzip``/``x-gzip`` and ``deflate`` (zlib-wrapped or raw) are decoded with ``zlib``, at most
``MAX_CODINGS`` layers, each layer's output capped at the route's ``maxBodyBytes`` (one byte
more is the proof it is over: ``SKIPPED``, 413) and at ``MAX_RATIO`` times its input (a
decompression bomb is refused before it is expanded, same answer). ``identity`` is nothing
to undo. Any other coding (``br``, ``zstd``, ``compress``, a typo) is ``UNSUPPORTED`` (415):
the checks cannot read it, so it never reaches the upstream unchecked. A stream that does
not inflate is malformed. ``defaults.body.contentEncoding: refuse`` refuses every coding but
``identity`` instead of decoding it.
"""

from __future__ import annotations

import zlib

from ._base import MALFORMED, SKIPPED, UNSUPPORTED, ParsedBody

MAX_CODINGS = 2  # "gzip, gzip" is legal and rare; more is a bomb in layers
MAX_RATIO = 1_000  # output bytes per input byte (gzip's own ceiling is about 1032)
_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}


def codings(header: str) -> list[str]:
    """The codings of a ``Content-Encoding`` value, in the order they were applied."""
    return [c for c in (p.strip().lower() for p in header.split(",")) if c and c != "identity"]


def undo(raw: bytes, header: str, max_bytes: int, decode: bool) -> bytes | ParsedBody:
    """The body with its codings undone, or the refusal (never raises)."""
    layers = codings(header)
    if not layers:
        return raw
    if not decode:
        return ParsedBody(
            UNSUPPORTED,
            error=f"Content-Encoding {header[:60]!r} is refused (defaults.body.contentEncoding)",
        )
    if len(layers) > MAX_CODINGS:
        return ParsedBody(UNSUPPORTED, error=f"more than {MAX_CODINGS} content codings")
    for coding in reversed(layers):
        if coding not in ("gzip", "x-gzip", "deflate"):
            return ParsedBody(
                UNSUPPORTED, error=f"Content-Encoding {coding[:40]!r} cannot be inspected"
            )
        cap = min(max_bytes, max(len(raw), 1) * MAX_RATIO)
        got = _inflate(raw, coding, cap)
        if isinstance(got, ParsedBody):
            return got
        raw = got
    return raw


def _inflate(data: bytes, coding: str, cap: int) -> bytes | ParsedBody:
    wbits = _ZLIB_WBITS.get(coding)
    attempts = (wbits,) if wbits is not None else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    error = ""
    for bits in attempts:  # deflate: zlib-wrapped as RFC 9110 says, or raw as some send it
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(data, cap + 1)
        except zlib.error as exc:
            error = str(exc)
            continue
        if len(out) > cap or inflater.unconsumed_tail:
            return ParsedBody(
                SKIPPED,
                error=f"{coding} body expands past {cap} bytes (maxBodyBytes or "
                f"{MAX_RATIO}x its size)",
            )
        if not inflater.eof:
            return ParsedBody(MALFORMED, error=f"{coding} body is cut short")
        if inflater.unused_data.strip(b"\r\n\0"):
            return ParsedBody(MALFORMED, error=f"data after the {coding} stream")
        return out
    return ParsedBody(MALFORMED, error=f"invalid {coding} body: {error[:80]}")
