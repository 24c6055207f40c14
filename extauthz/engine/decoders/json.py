"""JSON bodies (``application/json``, ``text/json``, ``*/*+json``, and JSON-looking bytes under
another label). Decisions for hostile input (issue 24: the checks read what a lenient upstream
parser reads, never less):

- strict RFC 8259 JSON in UTF-8 is the hot path; anything else is read leniently (``lenient``):
  a byte order mark, UTF-16/32 (by mark or zero-byte pattern), ``NaN``/``Infinity``, repeated
  object keys (every value inspected, the last one the value, the keys listed in
  ``duplicates``: a contract-checked route refuses them, ``defaults.body.duplicateKeys``),
  values after the first (the first is the value, as Go's ``json.Decoder`` and Jackson read
  it; the rest is inspected);
- malformed only when no JSON value parses at all (the text is still inspected);
- nesting deeper than the limit: found by the bracket pre-scan (``json_depth``), never handed
  to the parser (no ``RecursionError``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._base import JSON, MALFORMED, TOO_DEEP, Decoder, ParsedBody, json_depth

_LOOKS_LIKE_JSON = re.compile(rb'[ \t\r\n]*[\[{"]')


class _Repeated(ValueError):
    """A repeated key in strict parsing: the lenient reading takes over."""


_LOWER = str.lower


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs) or (len(d) > 1 and len(set(map(_LOWER, d))) != len(d)):
        raise _Repeated  # case-insensitive binders (ASP.NET, Jackson's option) merge keys too
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
        if text[:1] != "\ufeff":
            # positional: keywords cost ~0.1 µs here
            return ParsedBody(JSON, _decode(text), None, depth)
    except (ValueError, RecursionError):  # every strict failure: the lenient reading decides
        pass
    return lenient(raw, max_depth)


def json_text(raw: bytes) -> str | None:
    """``raw`` as the text a lenient parser reads: UTF-8, -16 or -32 by byte order mark or by
    the pattern of zero bytes (RFC 4627, ``json.detect_encoding``), the mark dropped; None
    when it does not decode."""
    encoding = json.detect_encoding(raw)
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return text[1:] if text[:1] == "\ufeff" else text


class _Seen:
    """What the lenient object hook saw: the objects that repeat a key, with every value."""

    def __init__(self) -> None:
        self.repeated: dict[int, tuple[dict[str, Any], dict[str, list[Any]]]] = {}
        self.folded: list[str] = []  # keys equal but for case ("amount", "Amount")

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)  # the last value wins, as in Python, JavaScript, Go and Jackson
        if len(d) != len(pairs):
            values: dict[str, list[Any]] = {}
            for k, v in pairs:
                values.setdefault(k, []).append(v)
            self.repeated[id(d)] = (d, {k: v for k, v in values.items() if len(v) > 1})
        if len(d) > 1:
            lowered: dict[str, str] = {}
            for k in d:
                other = lowered.setdefault(k.lower(), k)
                if other != k:
                    self.folded.append(f"{other}/{k}")
        return d


def lenient(raw: bytes, max_depth: int) -> ParsedBody:
    """What a lenient upstream parser reads in ``raw``, for the checks.

    A byte order mark, UTF-16/32, ``NaN``/``Infinity``, a repeated key (its last value is
    ``value``, every value is inspected, the key is in ``duplicates``), values after the
    first (``value`` is the first, as Go's ``json.Decoder`` and Jackson read it; the others,
    or the rest as text, are inspected). Malformed when no value parses at all; the text is
    then still ``inspect``-ed (the detectors read it when the policy lets it through).
    """
    encoding = json.detect_encoding(raw)
    text = json_text(raw)
    if text is None:
        return ParsedBody(
            MALFORMED, error="invalid UTF-8 (nor UTF-16 or UTF-32 by its byte order mark)"
        )
    utf8 = text.encode("utf-8", "surrogatepass")
    depth = json_depth(utf8)
    if depth > max_depth:
        return ParsedBody(TOO_DEEP, depth=depth)
    seen = _Seen()
    constants: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return float(name.replace("Infinity", "inf"))

    decoder = json.JSONDecoder(object_pairs_hook=seen.hook, parse_constant=constant)
    values: list[Any] = []
    pos = _skip_ws(text, 0)
    try:
        while pos < len(text):
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if not values:
                    return ParsedBody(
                        MALFORMED,
                        error=f"invalid JSON: {exc.msg} at char {exc.pos}",
                        inspect=text,
                    )
                values.append(text[pos:])  # trailing text: read as text
                break
            values.append(value)
            pos = _skip_ws(text, pos)
            if len(values) > _MAX_VALUES:
                values.append(text[pos:])
                break
    except (ValueError, RecursionError) as exc:  # huge integers
        return ParsedBody(MALFORMED, error=f"invalid JSON: {str(exc)[:120]}", inspect=text)
    if not values:
        return ParsedBody(MALFORMED, error="invalid JSON: no value", inspect=text)
    duplicates: tuple[str, ...] = ()
    view: Any = None
    if seen.repeated:
        try:
            view, found = _view(values[0] if len(values) == 1 else values, seen.repeated)
        except RecursionError:  # within max_depth this cannot happen; fail closed anyway
            return ParsedBody(MALFORMED, error="invalid JSON: nesting too deep")
        duplicates = tuple(found)
    elif len(values) > 1:
        view = values
    duplicates += tuple(seen.folded)
    why = [
        w
        for w, found in (
            ("a byte order mark", raw[:3] == b"\xef\xbb\xbf"),
            (f"{encoding.upper()} text", not encoding.startswith("utf-8")),
            (f"{constants[0] if constants else ''} (not JSON)", constants),
            ("data after the JSON value", len(values) > 1),
        )
        if found
    ]
    return ParsedBody(
        JSON,
        values[0],
        None,
        depth,
        inspect=view,
        duplicates=duplicates,
        lenient=", ".join(why) or None,
    )


_MAX_VALUES = 64  # values after the first read as JSON; the rest is inspected as text
_WS = re.compile(r"[ \t\r\n]*")


def _skip_ws(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m is not None else pos


def _view(value: Any, repeated: dict[int, Any], path: str = "") -> tuple[Any, list[str]]:
    """``value`` with every repeated key's values as a list in its place (the detectors walk
    lists transparently: a dotted field covers them), and the dotted names repeated."""
    found: list[str] = []
    if type(value) is dict:
        entry = repeated.get(id(value))
        shadow = entry[1] if entry is not None and entry[0] is value else {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            dotted = f"{path}.{k}" if path else k
            if k in shadow:
                found.append(dotted)
                items = []
                for item in shadow[k]:
                    got, more = _view(item, repeated, dotted)
                    items.append(got)
                    found.extend(more)
                out[k] = items
            else:
                out[k], more = _view(v, repeated, dotted)
                found.extend(more)
        return out, found
    if type(value) is list:
        items = []
        for item in value:
            got, more = _view(item, repeated, path)
            items.append(got)
            found.extend(more)
        return items, found
    return value, found


def looks_like_json(raw: bytes) -> bool:
    """JSON-looking bytes under any label: an object or array, after a byte order mark and in
    UTF-16/32 too (the encodings a lenient parser detects)."""
    if _LOOKS_LIKE_JSON.match(raw) is not None:
        return True
    head = raw[:4]
    if not head or not (head[:1] in _MARKS or b"\x00" in head):
        return False
    text = raw[:256].decode(json.detect_encoding(raw), "ignore")
    return text.lstrip("\ufeff \t\r\n")[:1] in ("{", "[", '"')


_MARKS = (b"\xef", b"\xfe", b"\xff")


# Declared JSON wins over any other declared type (rank 0); many frameworks parse JSON whatever
# the label (Flask get_json(force=True), body-parser type '*/*'), so JSON-looking bytes are
# decoded under any label: the checks read what the upstream may read.
DECODER = Decoder(
    "json",
    ("application/json", "text/json"),
    decode,
    suffixes=("json",),
    rank=0,
    sniff=looks_like_json,
    whole_body=True,
)
