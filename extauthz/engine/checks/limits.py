"""The size limits (``engine.limits``): body bytes, JSON nesting depth, array length."""

from __future__ import annotations

from ._kinds import Limit

MAX_BODY_BYTES = Limit(
    name="maxBodyBytes",
    hit="limit.body.max",
    default=1_048_576,
    schema={"type": "integer", "minimum": 0, "maximum": 1 << 30},
    explain="the body is larger than the route accepts (also: the proxy sent only part of it)",
)
MAX_JSON_DEPTH = Limit(
    name="maxJsonDepth",
    hit="limit.json.depth",
    default=32,
    schema={"type": "integer", "minimum": 1, "maximum": 512},
    explain="the JSON body nests deeper than the route accepts",
)
MAX_ARRAY_LENGTH = Limit(
    name="maxArrayLength",
    hit="limit.array.max",
    default=1000,
    schema={"type": "integer", "minimum": 0, "maximum": 10_000_000},
    explain="a JSON array, or a repeated form field, is longer than the route accepts",
)
CHECKS = (MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_ARRAY_LENGTH)
