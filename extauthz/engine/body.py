"""Turning a request body into the value the checks read, in bounded time.

A context may carry a parsed sample (``body.json.sample``, trusted as given) or raw bytes.
Raw bytes are parsed by content type: JSON types (``application/json``, ``*/*+json``) and
``application/x-www-form-urlencoded`` (repeated Content-Type headers arrive comma-joined: any
JSON or form type among them counts). Anything else stays opaque — unless the bytes start with
``{`` or ``[`` and parse as JSON: many frameworks parse JSON whatever the label, so the checks
run on it too (the contract still refuses a body not declared as JSON). Decisions for hostile
input:

- invalid UTF-8, a syntax error, ``NaN``/``Infinity``, or a duplicate object key: malformed
  (duplicate keys are refused because parsers disagree on which value wins, which lets a
  payload mean one thing to us and another to the upstream);
- nesting deeper than the limit: found by a cheap bracket pre-scan of the bytes, never
  handed to ``json.loads`` (no ``RecursionError``);
- a body larger than ``maxBodyBytes``: not parsed at all;
- a JSON body the proxy truncated (``partial``) below ``maxBodyBytes``: malformed, with a
  reason that names the truncation (the contract cannot be checked on part of a body).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl

from ..context import Body

NONE = "none"
JSON = "json"
FORM = "form"
OPAQUE = "opaque"
MALFORMED = "malformed"
TOO_DEEP = "too_deep"
SKIPPED = "skipped"  # oversize: not parsed

# A string literal, or an unterminated one running to the end: every match attempt that starts at
# a quote succeeds, so an escaped quote is never a new starting point (no quadratic restarts).
_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_LOOKS_LIKE_JSON = re.compile(rb"[ \t\r\n]*[\[{]")
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(slots=True)  # per-request and never shared: not frozen, for a cheaper __init__
class ParsedBody:
    kind: str
    value: Any = None
    error: str | None = None  # why the body is malformed
    depth: int = -1  # JSON depth when known from the pre-scan, -1 when not measured
    form_pairs: tuple[tuple[str, str], ...] = ()
    sniffed: bool = False  # JSON found in a body not declared as JSON (contract still refuses it)


NO_BODY = ParsedBody(NONE)


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


def media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    if content_type == "application/json":  # hot path: already bare and lower case
        return content_type
    return content_type.partition(";")[0].strip().lower()


def is_json_type(mt: str) -> bool:
    return mt == "application/json" or mt.endswith("+json") or mt == "text/json"


def json_depth(raw: bytes) -> int:
    """Maximum bracket nesting outside strings; linear time, no recursion."""
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return raw.count(b"[") + raw.count(b"{")
    stripped = _NOT_BRACKET.sub(b"", _STRINGS.sub(b"", raw) if b'"' in raw else raw)
    if not stripped:
        return 0
    steps = stripped.translate(_DEPTH_STEP)
    return max(0, max(accumulate(1 if b == 1 else -1 for b in steps)))


def parse(body: Body, content_type: str | None, max_depth: int, max_bytes: int) -> ParsedBody:
    """Parse what the checks need; never raises."""
    if body.json is not None:
        return ParsedBody(JSON, body.json.sample)
    raw = body.raw
    if raw is None or (not raw and not body.present):
        return NO_BODY
    if not raw:
        return NO_BODY
    if len(raw) > max_bytes:
        return ParsedBody(SKIPPED)
    # Repeated Content-Type headers arrive comma-joined; upstreams differ on which one wins,
    # so a body any of them declares as JSON (or a form) is parsed as such.
    if not content_type or "," not in content_type:
        mt = media_type(content_type)  # hot path: one type, no list or generator
        types = [mt]
        declared_json = is_json_type(mt)
    else:
        types = [media_type(part) for part in content_type.split(",", 8)]
        declared_json = any(is_json_type(mt) for mt in types)
    if declared_json:
        parsed = _parse_json(raw, max_depth)
        if parsed.kind == MALFORMED and body.partial:
            # Truncated JSON never parses; say why, so the operator raises the proxy's buffer.
            parsed.error = (
                f"body truncated by the proxy at {len(raw)} bytes (partial) and cannot be "
                "checked; raise Envoy's with_request_body.max_request_bytes to the policy's "
                "maxBodyBytes"
            )
        return parsed
    if FORM_TYPE in types:
        return _parse_form(raw)
    if _LOOKS_LIKE_JSON.match(raw):
        # Many frameworks parse JSON whatever the label (Flask get_json(force=True),
        # body-parser type '*/*'): the checks read what the upstream may read.
        sniffed = _parse_json(raw, max_depth)
        if sniffed.kind == JSON:
            sniffed.sniffed = True
            return sniffed
        if sniffed.kind == TOO_DEEP:
            return sniffed
    return ParsedBody(OPAQUE)


def _parse_json(raw: bytes, max_depth: int) -> ParsedBody:
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


def _parse_form(raw: bytes) -> ParsedBody:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=10_000,
        )
    except UnicodeDecodeError as exc:
        return ParsedBody(MALFORMED, error=f"invalid UTF-8 in form body: {exc.reason}")
    except ValueError as exc:
        return ParsedBody(MALFORMED, error=f"invalid form body: {exc}")
    form: dict[str, str] = {}
    for k, v in pairs:
        form[k] = f"{form[k]},{v}" if k in form else v
    return ParsedBody(FORM, form, form_pairs=tuple(pairs))
