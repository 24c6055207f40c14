"""JSON bodies (``application/json``, ``text/json``, ``*/*+json``, and JSON-looking bytes under
another label). Decisions for hostile input:

- invalid UTF-8, a syntax error, ``NaN``/``Infinity``, a byte order mark, or a duplicate object
  key: malformed (duplicate keys are refused because parsers disagree on which value wins,
  which lets a payload mean one thing to us and another to the upstream);
- nesting deeper than the limit: found by the bracket pre-scan (``json_depth``), never handed
  to the parser (no ``RecursionError``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._base import JSON, MALFORMED, TOO_DEEP, Decoder, ParsedBody, json_depth

_LOOKS_LIKE_JSON = re.compile(rb"[ \t\r\n]*[\[{]")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(f"duplicate key {k[:64]!r}")
            seen.add(k)
    return d


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: ``json.loads`` with keyword arguments builds a new decoder on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
_SCAN = _DECODER.scan_once


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``, with the same value and the same errors."""
    # hot path: a body from its first bracket to its last needs neither of the two whitespace
    # matches decode() wraps the scan in. Anything else, trailing data included, goes through
    # decode() itself, which raises the exact error.
    if text[:1] in ("{", "[") and text[-1:] in ("}", "]"):
        try:
            value, end = _SCAN(text, 0)
        except StopIteration as exc:  # a value missing inside: raised the way decode() does
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if end == len(text):
            return value
    return _DECODER.decode(text)


def decode(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
    opens = raw.count(b"[") + raw.count(b"{")
    depth = -1
    if opens > max_depth:
        depth = json_depth(raw)
        if depth > max_depth:
            return ParsedBody(TOO_DEEP, depth=depth)
    else:
        depth = opens  # an upper bound that is already within the limit
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ParsedBody(MALFORMED, error=f"invalid UTF-8 at byte {exc.start}")
    if text[:1] == "\ufeff":
        return ParsedBody(MALFORMED, error="byte order mark before JSON")
    try:
        value = _decode(text)
    except _DuplicateKey as exc:
        return ParsedBody(MALFORMED, error=str(exc))
    except json.JSONDecodeError as exc:
        return ParsedBody(MALFORMED, error=f"invalid JSON: {exc.msg} at char {exc.pos}")
    except (ValueError, RecursionError) as exc:  # huge integers, refused constants
        return ParsedBody(MALFORMED, error=f"invalid JSON: {str(exc)[:120]}")
    return ParsedBody(JSON, value, None, depth)  # positional: keywords cost ~0.1 µs here


# Declared JSON wins over any other declared type (rank 0); many frameworks parse JSON whatever
# the label (Flask get_json(force=True), body-parser type '*/*'), so JSON-looking bytes are
# decoded under any label: the checks read what the upstream may read.
DECODER = Decoder(
    "json",
    ("application/json", "text/json"),
    decode,
    suffixes=("json",),
    rank=0,
    sniff=_LOOKS_LIKE_JSON.match,
    whole_body=True,
)
