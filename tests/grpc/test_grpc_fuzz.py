"""Fuzzing the gRPC body path: truncated frames, lengths that lie, nesting past the limit,
huge repeated fields, random bytes under every gRPC content type. Every case must be a
decision (never an exception, never the engine's internal-error block) and the same decision
twice."""

from __future__ import annotations

import base64
import struct
from typing import Any

from _grpc_support import Ctx, frame, varint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.engine.decoders import grpc as grpc_body
from extauthz.engine.pipeline import evaluate
from extauthz.policy import CompiledPolicy

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web",
        "application/grpc-web-text",
    ]
)
PATHS = st.sampled_from(
    [
        "/shop.v1.Orders/CreateOrder",
        "/shop.v1.Orders/GetOrder",
        "/shop.v1.Orders/UploadItems",
        "/shop.v1.Orders/Chat",
        "/shop.v1.Orders/Unknown",
    ]
)


def check(policy: CompiledPolicy, ctx: Any) -> None:
    first = evaluate(policy, ctx)
    assert "engine.internalError" not in first.rule_ids, first.reason
    assert first.action in ("ALLOW", "BLOCK", "MONITOR")
    again = evaluate(policy, ctx)
    assert (again.action, again.status_code, again.rule_ids) == (
        first.action,
        first.status_code,
        first.rule_ids,
    )


@st.composite
def message_bytes(draw: st.DrawFn) -> bytes:
    """Protobuf-ish bytes: random fields of every wire type, nested, with lying lengths."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        field = draw(st.integers(1, 120))
        wire = draw(st.sampled_from([0, 1, 2, 5, 3, 4, 7]))
        key = varint(field << 3 | wire)
        if wire == 0:
            parts.append(key + varint(draw(st.integers(0, 2**64 - 1))))
        elif wire == 1:
            parts.append(key + draw(st.binary(min_size=0, max_size=8)))
        elif wire == 5:
            parts.append(key + draw(st.binary(min_size=0, max_size=4)))
        elif wire == 2:
            inner = draw(st.one_of(st.binary(max_size=40), message_bytes()))
            length = len(inner) + draw(st.sampled_from([0, 0, 0, -1, 1, 1000, 2**31]))
            parts.append(key + varint(max(length, 0)) + inner)
        else:
            parts.append(key)
    return b"".join(parts)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    frames: list[bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        payload = draw(message_bytes())
        flags = draw(st.sampled_from([0, 0, 0, 1, 0x80, 0x02]))
        length = len(payload) + draw(st.sampled_from([0, 0, 0, -1, 3, 2**32 - 1 - len(payload)]))
        frames.append(bytes([flags]) + struct.pack(">I", max(length, 0)) + payload)
    body = b"".join(frames)
    cut = draw(st.integers(0, len(body)))
    return body[:cut] if draw(st.booleans()) else body


@FUZZ
@given(body=bodies(), content_type=CONTENT_TYPES, path=PATHS, partial=st.booleans(),
       encoding=st.sampled_from(["", "gzip", "deflate", "identity", "br"]))  # fmt: skip
def test_any_framed_body_gets_a_deterministic_decision(
    shop_policy: CompiledPolicy,
    grpc_ctx: Ctx,
    body: bytes,
    content_type: str,
    path: str,
    partial: bool,
    encoding: str,
) -> None:
    if content_type == "application/grpc-web-text":
        body = base64.b64encode(body)
    headers = {"grpc-encoding": encoding} if encoding else {}
    check(shop_policy, grpc_ctx(body, path, content_type, headers, partial))


@FUZZ
@given(raw=st.binary(max_size=300), content_type=CONTENT_TYPES)
def test_random_bytes_never_crash_the_frame_decoder(raw: bytes, content_type: str) -> None:
    parsed = grpc_body.decode(raw, content_type, 8, 1 << 20)
    assert parsed.kind in ("grpc", "malformed")
    if parsed.kind == "grpc":
        rebuilt = b"".join(frame(p, int(c)) for c, p in parsed.value.frames)
        if parsed.value.cut is None and "text" not in content_type:
            assert rebuilt == raw  # whole frames are exactly the body


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(depth=st.integers(1, 400))
def test_nesting_at_any_depth_is_a_decision(
    shop_policy: CompiledPolicy, grpc_ctx: Ctx, depth: int
) -> None:
    node = b""
    for _ in range(depth):
        node = b"\x12" + varint(len(node)) + node  # Node.child
    body = b"\x0a\x02t1" + b"\x2a" + varint(len(node)) + node  # tenant, tree
    decision = evaluate(shop_policy, grpc_ctx(frame(body)))
    assert "engine.internalError" not in decision.rule_ids
    if depth + 1 > 8:  # maxJsonDepth 8: the request is level 1, the tree 2 ...
        assert decision.action == "BLOCK"
        assert decision.rule_ids[0] in ("limit.json.depth", "request.body.malformed")


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(count=st.integers(0, 60_000), packed=st.booleans())
def test_huge_repeated_fields_are_bounded_decisions(
    shop_policy: CompiledPolicy, grpc_ctx: Ctx, count: int, packed: bool
) -> None:
    item = b"\x0a\x01A\x10\x01"  # Item{sku: "A", quantity: 1}
    entry = b"\x1a" + varint(len(item)) + item  # CreateOrderRequest.items
    body = b"\x0a\x02t1" + entry * count
    decision = evaluate(shop_policy, grpc_ctx(frame(body)))
    assert "engine.internalError" not in decision.rule_ids
    if count > 100:  # maxArrayLength 100 (and buf.validate max_items 50)
        assert decision.action == "BLOCK"
        assert "limit.array.max" in decision.rule_ids or "limit.body.max" in decision.rule_ids
