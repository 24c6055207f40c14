"""The body phase: turning a request body into the value the checks read, in bounded time.

A context may carry a parsed sample (``body.json.sample``, trusted as given) or raw bytes.
Raw bytes are decoded by the decoder registered for their media type (``engine/decoders/``:
JSON, URL-encoded forms); repeated Content-Type headers arrive comma-joined, and the
lowest-ranked decoder any of them names decodes (JSON before a form). Anything else stays
opaque, unless a decoder recognises its bytes (``sniff``: JSON-looking bytes under any label),
then it is decoded leniently and marked ``sniffed`` (the contract still refuses a body not
declared as JSON), and JSON-looking bytes under a form label are inspected as JSON too;
sniffing never makes a body malformed (JSON-looking bytes that do not parse are inspected as
text). A ``Content-Encoding`` is undone first (``decoders/_coding``, bounded) or refused. What
this phase decides for every decoder:

- a body larger than ``maxBodyBytes``: not decoded at all (``SKIPPED``);
- a body the proxy truncated (``partial``) below ``maxBodyBytes`` that a whole-body decoder
  (JSON) finds malformed: a reason that names the truncation (the contract cannot be checked
  on part of a body).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..context import Body
from .decoders import SNIFFERS, Decoder, for_media_type
from .decoders._base import (
    FORM,
    GRPC,
    JSON,
    MALFORMED,
    MULTIPART,
    NO_BODY,
    NONE,
    OPAQUE,
    SKIPPED,
    TOO_DEEP,
    UNSUPPORTED,
    ParsedBody,
    json_depth,
)
from .decoders._coding import undo

__all__ = [
    "FORM",
    "GRPC",
    "JSON",
    "MALFORMED",
    "MULTIPART",
    "NONE",
    "NO_BODY",
    "OPAQUE",
    "SKIPPED",
    "TOO_DEEP",
    "UNSUPPORTED",
    "BodyOptions",
    "ParsedBody",
    "json_depth",
    "media_type",
    "parse",
]


def media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    if content_type == "application/json":  # hot path: already bare and lower case
        return content_type
    return content_type.partition(";")[0].strip().lower()


def _declared(content_type: str) -> tuple[Decoder | None, str]:
    """The decoder (and the part naming it) among comma-joined Content-Type headers: upstreams
    differ on which one wins, so the lowest-ranked decoder any of them names decodes."""
    found: Decoder | None = None
    declared = ""
    for part in content_type.split(",", 8):
        decoder = for_media_type(media_type(part))
        if decoder is not None and (found is None or decoder.rank < found.rank):
            found, declared = decoder, part.strip()
    return found, declared


@dataclass(frozen=True, slots=True)
class BodyOptions:
    """``defaults.body`` in the policy: what the body phase does with what a lenient upstream
    would still read (docs/policy.md, "Hostile bodies")."""

    #: A body that does not parse as its JSON (or form, multipart) label says: ``refuse``
    #: (``request.body.malformed``, 400) or ``inspect`` (its text goes to the detectors).
    malformed: str = "refuse"
    #: A key the body repeats on a route whose contract or CEL rules read the body:
    #: ``refuse`` (``request.body.duplicateKey``, 400) or ``allow`` (every value inspected,
    #: the contract reads the one most upstreams keep: the last for JSON).
    duplicate_keys: str = "refuse"
    #: ``decode`` (gzip, deflate, bounded) or ``refuse`` (415) a ``Content-Encoding``.
    content_encoding: str = "decode"


DEFAULT_OPTIONS = BodyOptions()


def parse(
    body: Body,
    content_type: str | None,
    max_depth: int,
    max_bytes: int,
    content_encoding: str | None = None,
    options: BodyOptions = DEFAULT_OPTIONS,
) -> ParsedBody:
    """Decode what the checks need; never raises."""
    if body.json is not None:
        return ParsedBody(JSON, body.json.sample)
    raw = body.raw
    if raw is None or not raw:
        return NO_BODY
    if len(raw) > max_bytes:
        return ParsedBody(SKIPPED)
    coded = False
    if content_encoding:
        undone = undo(raw, content_encoding, max_bytes, options.content_encoding == "decode")
        if isinstance(undone, ParsedBody):
            return undone
        coded = undone is not raw
        raw = undone
    if not content_type or "," not in content_type:
        decoder = for_media_type(media_type(content_type))  # hot path: one type, no loop
    else:
        decoder, content_type = _declared(content_type)
    if decoder is not None:
        parsed = decoder.decode(raw, content_type or "", max_depth, max_bytes)
        if parsed.kind == MALFORMED and body.partial and decoder.whole_body:
            # Truncated JSON never parses; say why, so the operator raises the proxy's buffer.
            parsed.error = (
                f"body truncated by the proxy at {len(raw)} bytes (partial) and cannot be "
                "checked; set Envoy's with_request_body.max_request_bytes to the policy's "
                "maxBodyBytes + 1"
            )
        if decoder.sniff is None and parsed.kind != TOO_DEEP:
            parsed = _also_json(parsed, raw, max_depth, max_bytes)
        if coded:
            parsed.depth = -1  # the limits phase's shortcuts read the raw (coded) bytes
        return parsed
    for sniffer in SNIFFERS:
        if sniffer.sniff is not None and sniffer.sniff(raw):
            sniffed = sniffer.decode(raw, "", max_depth, max_bytes)
            if sniffed.kind == TOO_DEEP:  # a limit holds whatever the label
                return sniffed
            if sniffed.kind == MALFORMED:  # not JSON after all: its text is still inspected
                return ParsedBody(OPAQUE, inspect=sniffed.inspect)
            sniffed.sniffed = True
            if coded:
                sniffed.depth = -1
            return sniffed
    return ParsedBody(OPAQUE)


def _also_json(parsed: ParsedBody, raw: bytes, max_depth: int, max_bytes: int) -> ParsedBody:
    """JSON-looking bytes under a form (or other non-JSON) label: a lenient upstream reads
    them as JSON, so the detectors read that JSON too, beside what the label's decoder made
    (and the depth limit holds whatever the label)."""
    for sniffer in SNIFFERS:
        if sniffer.sniff is not None and sniffer.sniff(raw):
            sniffed = sniffer.decode(raw, "", max_depth, max_bytes)
            if sniffed.kind == TOO_DEEP:
                return sniffed
            if sniffed.kind == JSON:
                found = sniffed.inspect if sniffed.inspect is not None else sniffed.value
                mine = parsed.inspect if parsed.inspect is not None else parsed.value
                parsed.inspect = [mine, found]
            break
    return parsed
