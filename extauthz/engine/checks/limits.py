"""The size limits (``engine.limits``): body bytes, JSON nesting depth, array length,
multipart parts and part bytes."""

from __future__ import annotations

from ._kinds import Limit

CHECKS = tuple(
    Limit(name, hit, default, {"type": "integer", "minimum": low, "maximum": high}, explain)
    for name, hit, default, low, high, explain in (
        ("maxBodyBytes", "limit.body.max", 1_048_576, 0, 1 << 30,
         "the body is larger than the route accepts (also: the proxy sent only part of it)"),
        ("maxJsonDepth", "limit.json.depth", 32, 1, 512,
         "the JSON body nests deeper than the route accepts"),
        ("maxArrayLength", "limit.array.max", 1000, 0, 10_000_000,
         "a JSON array, or a repeated form field, is longer than the route accepts"),
        ("maxMultipartParts", "limit.multipart.parts", 100, 0, 1_000,
         "a multipart body has more parts than the route accepts"),
        ("maxMultipartPartBytes", "limit.multipart.partBytes", 1_048_576, 0, 1 << 30,
         "a part of a multipart body is larger than the route accepts"),
    )
)  # fmt: skip
(MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_ARRAY_LENGTH, MAX_MULTIPART_PARTS,
 MAX_MULTIPART_PART_BYTES) = CHECKS  # fmt: skip
