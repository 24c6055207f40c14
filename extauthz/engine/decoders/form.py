"""URL-encoded forms (``application/x-www-form-urlencoded``): repeated fields are joined with
commas in ``value`` and kept one by one in ``form_pairs`` (which ``maxArrayLength`` counts and
signatures cover) and in the detectors' view (``inspect``: each value on its own, JSON text in
a key or value parsed too); invalid UTF-8 or percent-escapes are malformed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from ._base import FORM, JSON, MALFORMED, Decoder, ParsedBody
from .json import lenient


def decode(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
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
    parsed = ParsedBody(FORM, form, form_pairs=tuple(pairs))
    if (
        len(form) != len(pairs)
        or (len(form) > 1 and len({k.lower() for k in form}) != len(form))
        or any(_JSONISH.match(k) or _JSONISH.match(v) for k, v in pairs)
    ):
        parsed.inspect, parsed.duplicates = view_of(pairs, max_depth)
    return parsed


_JSONISH = re.compile(r"[ \t\r\n]*[\[{]")


def view_of(pairs: list[tuple[str, str]], max_depth: int) -> tuple[Any, tuple[str, ...]]:
    """What the detectors read in form fields: every value of a repeated field (a list in its
    place, never the comma-joined ``value``), and JSON text in a key or a value parsed as a
    lenient upstream would parse it (``{"$ne": 1}`` sent as one form key); the repeated names."""
    fields: dict[str, list[str]] = {}
    for k, v in pairs:
        fields.setdefault(k, []).append(v)
    view: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
    found: list[Any] = []
    for k, v in pairs:
        for text in (k, v):
            if _JSONISH.match(text):
                parsed = lenient(text.encode("utf-8", "surrogatepass"), max_depth)
                if parsed.kind == JSON:
                    found.append(parsed.inspect if parsed.inspect is not None else parsed.value)
    repeated = tuple(k for k, v in fields.items() if len(v) > 1)
    folded: dict[str, str] = {}
    for k in fields:  # case-insensitive binders (ASP.NET) read "amount" and "Amount" as one
        other = folded.setdefault(k.lower(), k)
        if other != k:
            repeated += (f"{other}/{k}",)
    return ([view, *found] if found else view), repeated


# A form cut short by the proxy is still a form: its fields up to the cut are checked.
DECODER = Decoder("form", ("application/x-www-form-urlencoded",), decode, rank=10)
