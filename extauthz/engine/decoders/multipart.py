"""``multipart/form-data`` (RFC 7578) with python-multipart's streaming parser.

Chosen by measurement (docs/policy.md, "Multipart bodies"): python-multipart's
``MultipartParser`` reports every part, its headers and its data through callbacks, with
limits on header count and header-line size, and scans for the boundary with ``bytes.find``;
streaming-form-data only hands registered field names to targets (an unknown part would be
invisible to the checks) and was 40x slower on a small upload.

Every part is kept (``ParsedBody.parts``: name, filename, content type, bytes, UTF-8 text
for a field); the ``value`` the detectors, CEL and limits read is the fields' text, a repeated
field's values comma-joined as a URL-encoded form's are (``form_pairs`` keeps them one by
one), and each file as ``{"filename", "contentType", "size"}`` (its bytes are not text to
scan; its name is). Malformed, with a reason: no boundary, a part without
``Content-Disposition: form-data; name=...``, more than ``MAX_PARTS`` parts, a part's header
block over ``MAX_HEADER_BYTES`` or ``MAX_HEADERS`` lines, a filename over
``MAX_FILENAME`` characters or holding a control character, a body that ends before its
closing boundary.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from ._base import MALFORMED, MULTIPART, Decoder, ParsedBody, Part
from .form import _JSONISH, view_of

MAX_PARTS = 1_000
MAX_HEADERS = 16  # header lines in one part
MAX_HEADER_BYTES = 8_192  # one part's header block
MAX_FILENAME = 255  # characters
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Refused(Exception):
    """A limit or a rule of this decoder, met while parsing."""


def boundary_of(content_type: str) -> str | None:
    _, params = parse_options_header(content_type)
    raw = params.get(b"boundary")
    if raw is None:
        return None
    boundary = raw.decode("latin-1")
    return boundary if _BOUNDARY.match(boundary) else None


class _Collector:
    """The parser's callbacks: each part's headers and data."""

    def __init__(self) -> None:
        self.parts: list[tuple[list[tuple[bytes, bytes]], list[bytes]]] = []
        self._field: list[bytes] = []
        self._value: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._data: list[bytes] = []
        self._header_bytes = 0

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise _Refused(f"more than {MAX_PARTS} parts")
        self._headers = []
        self._data = []
        self._header_bytes = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field.append(data[start:end])
        self._count(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value.append(data[start:end])
        self._count(end - start)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _Refused(f"a part's headers are larger than {MAX_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        self._headers.append((b"".join(self._field).lower(), b"".join(self._value)))
        self._field = []
        self._value = []

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

    def on_part_end(self) -> None:
        self.parts.append((self._headers, self._data))


def _part(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Part:
    disposition = [v for k, v in headers if k == b"content-disposition"]
    if len(disposition) != 1:
        raise _Refused("a part needs exactly one Content-Disposition header")
    kind, params = parse_options_header(disposition[0].decode("latin-1"))
    name_raw = params.get(b"name")
    if kind != b"form-data" or name_raw is None:
        raise _Refused("a part's Content-Disposition must be form-data with a name")
    try:
        name = name_raw.decode("latin-1").encode("latin-1").decode("utf-8")
        filename = params.get(b"filename")
        file_text = None
        if filename is not None:
            file_text = filename.decode("latin-1").encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("a part's name or filename is not UTF-8") from None
    if file_text is not None:
        if len(file_text) > MAX_FILENAME:
            raise _Refused(f"a filename is longer than {MAX_FILENAME} characters")
        if _CONTROL.search(file_text):
            raise _Refused("a filename holds a control character")
    types = [v for k, v in headers if k == b"content-type"]
    if len(types) > 1:
        raise _Refused("a part has several Content-Type headers")
    content_type = types[0].decode("latin-1").strip() if types else ""
    data = b"".join(chunks)
    text = None
    if file_text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return Part(name, file_text, content_type, data, text)


def decode(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
    boundary = boundary_of(content_type)
    if boundary is None:
        return ParsedBody(MALFORMED, error="multipart body without a valid boundary parameter")
    sink = _Collector()
    callbacks: Any = {
        "on_part_begin": sink.on_part_begin,
        "on_header_field": sink.on_header_field,
        "on_header_value": sink.on_header_value,
        "on_header_end": sink.on_header_end,
        "on_part_data": sink.on_part_data,
        "on_part_end": sink.on_part_end,
    }
    parser = MultipartParser(
        boundary,
        callbacks,
        max_size=max(1, max_bytes),
        max_header_count=MAX_HEADERS,
        max_header_size=MAX_HEADER_BYTES,
    )
    try:
        parser.write(raw)
        parser.finalize()
        if parser.state != MultipartState.END:
            return ParsedBody(MALFORMED, error="multipart body ends before its closing boundary")
        parts = tuple(_part(headers, chunks) for headers, chunks in sink.parts)
    except _Refused as exc:
        return ParsedBody(MALFORMED, error=f"multipart body refused: {exc}")
    except (FormParserError, ValueError) as exc:
        return ParsedBody(MALFORMED, error=f"invalid multipart body: {str(exc)[:120]}")
    fields: dict[str, Any] = {}
    pairs: list[tuple[str, str]] = []
    for part in parts:
        if part.text is not None:
            pairs.append((part.name, part.text))
            item: Any = part.text
        else:
            item = {
                "filename": part.filename,
                "contentType": part.content_type,
                "size": len(part.data),
            }
        known = fields.get(part.name)
        if known is None:
            fields[part.name] = item
        elif isinstance(known, str) and isinstance(item, str):
            fields[part.name] = f"{known},{item}"
        else:
            fields[part.name] = [*(known if isinstance(known, list) else [known]), item]
    parsed = ParsedBody(MULTIPART, fields, form_pairs=tuple(pairs), parts=parts)
    names = [p.name for p in parts]
    if len(set(names)) != len(names) or any(_JSONISH.match(t) for _, t in pairs):
        view, repeated = view_of(pairs, max_depth)
        files = {p.name: fields[p.name] for p in parts if p.text is None}
        if isinstance(view, dict):
            view.update({k: v for k, v in files.items() if k not in view})
        else:
            view[0].update({k: v for k, v in files.items() if k not in view[0]})
        parsed.inspect = view
        counts = Counter(names)
        parsed.duplicates = tuple(dict.fromkeys((*repeated, *(n for n in names if counts[n] > 1))))
    return parsed


# Without its closing boundary a body is not a whole multipart body: malformed (whole_body).
DECODER = Decoder("multipart", ("multipart/form-data",), decode, rank=20, whole_body=True)
