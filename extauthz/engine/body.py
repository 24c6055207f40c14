"""The body phase: turning a request body into the value the checks read, in bounded time.

A context may carry a parsed sample (``body.json.sample``, trusted as given) or raw bytes.
Raw bytes are decoded by the decoder registered for their media type (``engine/decoders/``:
JSON, URL-encoded forms); repeated Content-Type headers arrive comma-joined, and the
lowest-ranked decoder any of them names decodes (JSON before a form). Anything else stays
opaque, unless a decoder recognises its bytes (``sniff``: JSON-looking bytes under any label),
then it is decoded and marked ``sniffed`` (the contract still refuses a body not declared as
JSON); sniffing never makes a body malformed. What this phase decides for every decoder:

- a body larger than ``maxBodyBytes``: not decoded at all (``SKIPPED``);
- a body the proxy truncated (``partial``) below ``maxBodyBytes`` that a whole-body decoder
  (JSON) finds malformed: a reason that names the truncation (the contract cannot be checked
  on part of a body).
"""

from __future__ import annotations

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
    ParsedBody,
    json_depth,
)

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


def parse(body: Body, content_type: str | None, max_depth: int, max_bytes: int) -> ParsedBody:
    """Decode what the checks need; never raises."""
    if body.json is not None:
        return ParsedBody(JSON, body.json.sample)
    raw = body.raw
    if raw is None or (not raw and not body.present):
        return NO_BODY
    if not raw:
        return NO_BODY
    if len(raw) > max_bytes:
        return ParsedBody(SKIPPED)
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
                "checked; raise Envoy's with_request_body.max_request_bytes to the policy's "
                "maxBodyBytes"
            )
        return parsed
    for sniffer in SNIFFERS:
        if sniffer.sniff is not None and sniffer.sniff(raw):
            sniffed = sniffer.decode(raw, "", max_depth, max_bytes)
            if sniffed.kind == TOO_DEEP:  # a limit holds whatever the label
                return sniffed
            if sniffed.kind != MALFORMED:
                sniffed.sniffed = True
                return sniffed
    return ParsedBody(OPAQUE)
