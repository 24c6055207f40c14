"""URL-encoded forms (``application/x-www-form-urlencoded``): repeated fields are joined with
commas in ``value`` and kept one by one in ``form_pairs`` (which ``maxArrayLength`` counts and
signatures cover); invalid UTF-8 or percent-escapes are malformed."""

from __future__ import annotations

from urllib.parse import parse_qsl

from ._base import FORM, MALFORMED, Decoder, ParsedBody


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
    return ParsedBody(FORM, form, form_pairs=tuple(pairs))


# A form cut short by the proxy is still a form: its fields up to the cut are checked.
DECODER = Decoder("form", ("application/x-www-form-urlencoded",), decode, rank=10)
