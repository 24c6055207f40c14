"""Size limits: body bytes, JSON nesting depth, array length, multipart parts (``limit.*``).

The body size is the larger of what the proxy declared (``sizeBytes``, or ``content-length``
when the proxy sent only part of the body) and the bytes actually present. A body the proxy
cut (``partial``) is never allowed when its real size can exceed the limit: over it, or of
unknown size (no declared length beyond the bytes seen, a chunked body): ``limit.body.max``;
the start of a gRPC stream that a ``streaming: firstMessage`` route checks is the exception
(cut by design). Depth and array lengths are measured with an explicit stack: no recursion,
linear in the number of nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._http import declared_length
from ..context import Body
from ..decision import RuleHit
from .body import FORM, JSON, MULTIPART, SKIPPED, TOO_DEEP, ParsedBody
from .checks.limits import (
    MAX_ARRAY_LENGTH,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_MULTIPART_PART_BYTES,
    MAX_MULTIPART_PARTS,
)

BODY_MAX = MAX_BODY_BYTES.hit
JSON_DEPTH = MAX_JSON_DEPTH.hit
ARRAY_MAX = MAX_ARRAY_LENGTH.hit
PARTS_MAX = MAX_MULTIPART_PARTS.hit
PART_BYTES_MAX = MAX_MULTIPART_PART_BYTES.hit


@dataclass(frozen=True, slots=True)
class Limits:
    """One attribute per limit of the catalogue (``checks.limits``), with its default."""

    max_body_bytes: int = MAX_BODY_BYTES.default
    max_json_depth: int = MAX_JSON_DEPTH.default
    max_array_length: int = MAX_ARRAY_LENGTH.default
    max_multipart_parts: int = MAX_MULTIPART_PARTS.default
    max_multipart_part_bytes: int = MAX_MULTIPART_PART_BYTES.default


def body_size(body: Body, headers: Mapping[str, str]) -> int:
    size = body.size_bytes
    if body.raw is not None and len(body.raw) > size:
        size = len(body.raw)
    if body.partial:
        declared = declared_length(headers.get("content-length"))
        if declared is not None:
            size = max(size, declared)
    return size


def measure(value: Any, max_depth: int, max_array: int) -> tuple[int, int]:
    """Return (depth, longest array) — stopping early once both limits are exceeded."""
    if type(value) is not dict and type(value) is not list:
        return 0, 0
    depth = 0
    longest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        node, d = pop()
        if d > depth:
            depth = d
        if type(node) is dict:
            children = node.values()
        else:
            if len(node) > longest:
                longest = len(node)
            children = node
        if depth > max_depth and longest > max_array:
            break
        for child in children:
            t = type(child)
            if t is dict or t is list:
                push((child, d + 1))
    return depth, longest


def check(
    limits: Limits, body: Body, headers: Mapping[str, str], parsed: ParsedBody, hits: list[RuleHit]
) -> None:
    size = body_size(body, headers)
    if size > limits.max_body_bytes or parsed.kind == SKIPPED:
        why = parsed.error or f"body is {size} bytes; the limit is {limits.max_body_bytes}"
        hits.append(RuleHit(BODY_MAX, "high", why))
    elif body.partial and size <= len(body.raw or b"") and not parsed.stream_start:
        # Cut by the proxy, and no declared length beyond the bytes seen (chunked, or HTTP
        # mode's rewritten content-length): its real size is unknown and can exceed the limit.
        hits.append(
            RuleHit(
                BODY_MAX,
                "high",
                f"body cut by the proxy at {size} bytes and its length is not declared: it "
                f"can exceed the limit {limits.max_body_bytes} (set Envoy's max_request_bytes "
                "to maxBodyBytes + 1)",
            )
        )
    if parsed.kind == TOO_DEEP:
        hits.append(
            RuleHit(
                JSON_DEPTH,
                "high",
                f"JSON nesting depth {parsed.depth} exceeds {limits.max_json_depth}",
            )
        )
        return
    if parsed.kind != JSON:
        if parsed.kind == MULTIPART:
            _parts(limits, parsed, hits)
        if (parsed.kind == FORM or parsed.kind == MULTIPART) and len(
            parsed.form_pairs
        ) > limits.max_array_length:
            counts: dict[str, int] = {}
            for key, _ in parsed.form_pairs:
                counts[key] = counts.get(key, 0) + 1
            longest = max(counts.values())
            if longest > limits.max_array_length:
                hits.append(
                    RuleHit(
                        ARRAY_MAX,
                        "high",
                        f"a form field repeats {longest} times; the limit is "
                        f"{limits.max_array_length}",
                    )
                )
        return
    value = parsed.value
    if type(value) is not dict and type(value) is not list:
        return
    # The pre-scan bound holds, and an array cannot be longer than the commas in the body
    # (hot path: nor than the body itself, which needs no scan).
    raw = body.raw
    if (
        0 <= parsed.depth <= limits.max_json_depth
        and raw is not None
        and (len(raw) < limits.max_array_length or raw.count(b",") < limits.max_array_length)
    ):
        return
    depth, longest = measure(value, limits.max_json_depth, limits.max_array_length)
    if depth > limits.max_json_depth:
        hits.append(
            RuleHit(
                JSON_DEPTH, "high", f"JSON nesting depth {depth} exceeds {limits.max_json_depth}"
            )
        )
    if longest > limits.max_array_length:
        hits.append(
            RuleHit(
                ARRAY_MAX,
                "high",
                f"an array has {longest} elements; the limit is {limits.max_array_length}",
            )
        )


def _parts(limits: Limits, parsed: ParsedBody, hits: list[RuleHit]) -> None:
    parts = parsed.parts
    if len(parts) > limits.max_multipart_parts:
        hits.append(
            RuleHit(
                PARTS_MAX,
                "high",
                f"the multipart body has {len(parts)} parts; the limit is "
                f"{limits.max_multipart_parts}",
            )
        )
    largest = max((len(p.data) for p in parts), default=0)
    if largest > limits.max_multipart_part_bytes:
        hits.append(
            RuleHit(
                PART_BYTES_MAX,
                "high",
                f"a multipart part is {largest} bytes; the limit is "
                f"{limits.max_multipart_part_bytes}",
            )
        )
