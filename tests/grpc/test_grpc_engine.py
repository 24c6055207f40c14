"""gRPC request bodies through the whole pipeline: framing, the method's message, unknown
fields, buf.validate constraints, the JSON mapping the other phases read (limits, detectors,
CEL), and the decisions for malformed, compressed, streaming and gRPC-Web bodies."""

from __future__ import annotations

import base64
import gzip
import zlib
from typing import Any

import pytest
from _grpc_support import Ctx, frame, varint

from extauthz.engine import body as b
from extauthz.engine.decoders import for_media_type
from extauthz.engine.decoders import grpc as grpc_body
from extauthz.engine.pipeline import evaluate
from extauthz.policy import CompiledPolicy


def valid(messages: dict[str, Any], **fields: Any) -> bytes:
    fields = {
        "tenant": "t1",
        "customer_email": "ann@example.com",
        "items": [{"sku": "A-1", "quantity": 2}],
        **fields,
    }
    return messages["create-order"](**fields).SerializeToString()


def decide(policy: CompiledPolicy, ctx: Any) -> tuple[str, int, list[str]]:
    d = evaluate(policy, ctx)
    return d.action, d.status_code, [h.id for h in d.rule_hits]


def test_a_valid_unary_call_is_allowed_and_its_json_mapping_is_what_cel_reads(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    assert decide(shop_policy, grpc_ctx(frame(valid(messages)))) == ("ALLOW", 200, [])
    # the tenant binding is a CEL rule over request.body.tenant (the proto field name)
    wrong = grpc_ctx(frame(valid(messages, tenant="t2")))
    assert decide(shop_policy, wrong) == ("BLOCK", 403, ["tenant.binding"])
    # a proto3 field left at its default is still in the mapping (""): the rule sees it
    empty = grpc_ctx(frame(valid(messages, tenant="")))
    assert decide(shop_policy, empty)[2] == ["tenant.binding"]


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        ("application/grpc", lambda f: f),
        ("application/grpc+proto", lambda f: f),
        ("application/grpc-web", lambda f: f),
        ("application/grpc-web+proto", lambda f: f),
        ("application/grpc-web-text", base64.b64encode),
        ("application/grpc-web-text+proto", base64.b64encode),
    ],
)
def test_grpc_and_grpc_web_bodies_decode_the_same_way(
    shop_policy: CompiledPolicy,
    messages: dict[str, Any],
    grpc_ctx: Ctx,
    content_type: str,
    encode: Any,
) -> None:
    assert for_media_type(content_type) is grpc_body.DECODER
    ok = grpc_ctx(encode(frame(valid(messages))), content_type=content_type)
    assert decide(shop_policy, ok) == ("ALLOW", 200, [])
    bad = grpc_ctx(encode(frame(valid(messages, tenant="t9"))), content_type=content_type)
    assert decide(shop_policy, bad)[2] == ["tenant.binding"]


def test_grpc_web_text_in_several_padded_chunks_decodes(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    payload = frame(valid(messages))
    text = base64.b64encode(payload[:7]) + base64.b64encode(payload[7:])
    ctx = grpc_ctx(text, content_type="application/grpc-web-text")
    assert decide(shop_policy, ctx) == ("ALLOW", 200, [])
    broken = grpc_ctx(b"AAAA!!", content_type="application/grpc-web-text")
    assert decide(shop_policy, broken)[:2] == ("BLOCK", 400)


def test_unknown_fields_are_refused_by_default_wherever_they_are(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    top = valid(messages) + b"\x98\x06\x01"  # field 99, varint
    d = evaluate(shop_policy, grpc_ctx(frame(top)))
    assert [h.id for h in d.rule_hits] == ["contract.unknownField"]
    assert "#99" in d.rule_hits[0].message
    # inside a repeated message: items[0] with field 7
    item = messages["upload-items"](sku="A", quantity=1).SerializeToString() + b"\x38\x01"
    nested = messages["create-order"](tenant="t1", customer_email="a@b.co").SerializeToString()
    nested += b"\x1a" + bytes([len(item)]) + item
    d = evaluate(shop_policy, grpc_ctx(frame(nested)))
    assert [h.id for h in d.rule_hits] == ["contract.unknownField"]
    assert "items[0]#7" in d.rule_hits[0].message


def test_a_field_sent_with_the_wrong_wire_type_is_an_unknown_field(
    shop_policy: CompiledPolicy, grpc_ctx: Ctx
) -> None:
    # tenant (field 1) is a string; sent as a varint, protobuf keeps it as an unknown field
    d = evaluate(shop_policy, grpc_ctx(frame(b"\x08\x01")))
    assert "contract.unknownField" in [h.id for h in d.rule_hits]
    assert d.action == "BLOCK"


def test_each_buf_validate_violation_is_a_hit_naming_field_path_and_rule(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    body = valid(messages, customer_email="nope", items=[{"sku": "", "quantity": 0}])
    d = evaluate(shop_policy, grpc_ctx(frame(body)))
    assert d.action == "BLOCK"
    found = {h.message for h in d.rule_hits if h.id == "contract.protovalidate"}
    assert found == {
        "customer_email: string.email: must be a valid email address",
        "items[0].sku: string.min_len: must be at least 1 characters",
        "items[0].quantity: int32.gt_lte: must be greater than 0 and less than or equal to 100",
    }
    bad_id = messages["get-order"](id="not-a-uuid").SerializeToString()
    d = evaluate(shop_policy, grpc_ctx(frame(bad_id), path="/shop.v1.Orders/GetOrder"))
    assert [h.message for h in d.rule_hits] == ["id: string.uuid: must be a valid UUID"]


def test_detectors_and_limits_read_the_messages_json_mapping(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    d = evaluate(shop_policy, grpc_ctx(frame(valid(messages, note="../../etc/passwd"))))
    assert [h.id for h in d.rule_hits] == ["vulnerability.pathTraversal"]
    assert "note" in d.rule_hits[0].message
    many = [{"sku": "A", "quantity": 1}] * 101  # maxArrayLength 100; max_items 50 as well
    d = evaluate(shop_policy, grpc_ctx(frame(valid(messages, items=many))))
    assert {"limit.array.max", "contract.protovalidate"} <= {h.id for h in d.rule_hits}


def _nested(messages: dict[str, Any], depth: int) -> bytes:
    node = messages["create-order"]().tree.__class__(name="leaf")
    for _ in range(depth - 1):
        node = node.__class__(name="n", child=node)
    return valid(messages, tree=node)


def test_nesting_past_the_depth_limit_is_refused_before_it_is_mapped(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    # maxJsonDepth 8: the request message is depth 1, its tree nodes 2, 3, ...
    assert decide(shop_policy, grpc_ctx(frame(_nested(messages, 7))))[0] == "ALLOW"
    action, _, ids = decide(shop_policy, grpc_ctx(frame(_nested(messages, 30))))
    assert (action, ids[0]) == ("BLOCK", "limit.json.depth")  # CEL then sees no body: hits too
    # deeper than protobuf's own recursion limit: malformed, not a crash
    deep = b""
    for _ in range(200):
        deep = b"\x12" + varint(len(deep)) + deep  # Node.child
    body = b"\x2a" + varint(len(deep)) + deep  # CreateOrderRequest.tree
    action, _, ids = decide(shop_policy, grpc_ctx(frame(body)))
    assert action == "BLOCK" and ids and ids[0] in ("request.body.malformed", "limit.json.depth")


@pytest.mark.parametrize(
    ("body_of", "reason"),
    [
        (lambda ok: b"", "exactly one message frame, not 0"),
        (lambda ok: frame(ok) + frame(ok), "exactly one message frame, not 2"),
        (lambda ok: frame(ok)[:-1], "follow"),
        (lambda ok: frame(ok)[:3], "header cut short"),
        (lambda ok: frame(ok) + b"\x00", "header cut short"),
        (lambda ok: frame(ok, flags=0x80), "trailer frame"),
        (lambda ok: frame(ok, flags=0x04), "flags 0x04"),
        (lambda ok: frame(b"\xff\xff"), "not a shop.v1.CreateOrderRequest message"),
        (lambda ok: frame(b"\x0a\x02\xc3\x28"), "not a shop.v1.CreateOrderRequest"),  # bad UTF-8
    ],
)
def test_a_body_that_is_not_exactly_one_well_formed_frame_is_malformed(
    shop_policy: CompiledPolicy,
    messages: dict[str, Any],
    grpc_ctx: Ctx,
    body_of: Any,
    reason: str,
) -> None:
    body = body_of(valid(messages))
    if not body:  # an empty body: the route's method still needs its one frame
        d = evaluate(shop_policy, grpc_ctx(body))
        assert d.action == "BLOCK" and d.rule_hits[0].id == "contract.mediaType"
        return
    d = evaluate(shop_policy, grpc_ctx(body))
    assert (d.action, d.status_code) == ("BLOCK", 400)
    assert d.rule_hits[0].id == "request.body.malformed"
    assert reason in d.rule_hits[0].message


def test_a_json_body_on_a_grpc_route_is_refused(shop_policy: CompiledPolicy, grpc_ctx: Ctx) -> None:
    d = evaluate(shop_policy, grpc_ctx(b'{"tenant": "t1"}', content_type="application/json"))
    assert (d.action, d.status_code) == ("BLOCK", 415)
    assert d.rule_hits[0].id == "contract.mediaType"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_frames_are_inflated_per_grpc_encoding(
    shop_policy: CompiledPolicy,
    messages: dict[str, Any],
    grpc_ctx: Ctx,
    encoding: str,
    compress: Any,
) -> None:
    ok = grpc_ctx(frame(compress(valid(messages)), 1), headers={"grpc-encoding": encoding})
    assert decide(shop_policy, ok) == ("ALLOW", 200, [])
    bad = grpc_ctx(
        frame(compress(valid(messages, tenant="x")), 1), headers={"grpc-encoding": encoding}
    )
    assert decide(shop_policy, bad)[2] == ["tenant.binding"]


@pytest.mark.parametrize(
    ("headers", "payload", "reason"),
    [
        ({}, gzip.compress(b""), "without a grpc-encoding"),
        ({"grpc-encoding": "identity"}, b"", "without a grpc-encoding"),
        ({"grpc-encoding": "snappy"}, b"x", "unsupported grpc-encoding 'snappy'"),
        ({"grpc-encoding": "gzip"}, b"not gzip", "does not inflate"),
        ({"grpc-encoding": "gzip"}, gzip.compress(b"\x00" * 2_000_000), "inflates past"),
        ({"grpc-encoding": "gzip"}, gzip.compress(b"")[:-3], "not one whole gzip stream"),
    ],
)
def test_compressed_frames_that_cannot_be_inflated_within_bounds_are_malformed(
    shop_policy: CompiledPolicy,
    grpc_ctx: Ctx,
    headers: dict[str, str],
    payload: bytes,
    reason: str,
) -> None:
    d = evaluate(shop_policy, grpc_ctx(frame(payload, 1), headers=headers))
    assert (d.action, d.status_code, d.rule_hits[0].id) == ("BLOCK", 400, "request.body.malformed")
    assert reason in d.rule_hits[0].message


def test_streaming_methods_are_refused_unless_the_route_checks_the_first_message(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    item = messages["upload-items"](sku="A", quantity=1).SerializeToString()
    chat = grpc_ctx(frame(item), path="/shop.v1.Orders/Chat")
    assert decide(shop_policy, chat) == ("BLOCK", 403, ["contract.grpcStreaming"])
    # streaming: firstMessage checks every whole message buffered
    upload = "/shop.v1.Orders/UploadItems"
    assert decide(shop_policy, grpc_ctx(frame(item) * 3, path=upload))[0] == "ALLOW"
    bad = messages["upload-items"](sku="", quantity=1).SerializeToString()
    d = evaluate(shop_policy, grpc_ctx(frame(item) + frame(bad), path=upload))
    assert [h.message for h in d.rule_hits] == [
        "sku: string.min_len: must be at least 1 characters"
    ]
    # the start of a stream Envoy cut at its buffer: the cut frame is not checked ...
    cut = frame(item) + frame(item)[:-2]
    assert decide(shop_policy, grpc_ctx(cut, path=upload, partial=True))[0] == "ALLOW"
    # ... but a body that was not cut by the proxy must be whole
    assert decide(shop_policy, grpc_ctx(cut, path=upload))[:2] == ("BLOCK", 400)
    # a unary call Envoy cut: its size is unknown (limit.body.max, as for any cut body) and
    # its frame malformed; both reasons say what to raise
    d = evaluate(shop_policy, grpc_ctx(frame(item)[:-2], partial=True))
    assert list(d.rule_ids[:2]) == ["limit.body.max", "request.body.malformed"]
    assert all("max_request_bytes" in h.message for h in d.rule_hits[:2])
    # and a stream with no whole message at all is refused: nothing was checked, so it is a
    # cut body of unknown size (413) as well as malformed
    d = evaluate(shop_policy, grpc_ctx(frame(item)[:-2], path=upload, partial=True))
    assert (d.action, d.status_code) == ("BLOCK", 413)
    assert list(d.rule_ids[:2]) == ["limit.body.max", "request.body.malformed"]


def test_a_grpc_body_on_a_route_without_a_method_stays_opaque(grpc_ctx: Ctx) -> None:
    from extauthz.policy import load_policy_text

    policy = load_policy_text(
        'policyVersion: "0.1"\nroutes:\n  - id: any\n    match: {path: "/shop.v1.Orders/{m}"}\n'
    )
    assert decide(policy, grpc_ctx(frame(b"\x0a\x01a")))[0] == "ALLOW"
    # framing errors are still refused
    assert decide(policy, grpc_ctx(frame(b"\x0a\x01a")[:-1]))[:2] == ("BLOCK", 400)
    assert (
        grpc_body.message(
            b.ParsedBody(b.GRPC, grpc_body.Frames(((False, b"x"),))), None, {}, False, 8, 100
        ).kind
        == b.OPAQUE
    )


def test_an_any_field_maps_with_the_sets_own_types_or_is_refused(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    order = messages["create-order"]
    item = messages["upload-items"](sku="../../etc/passwd", quantity=1)
    msg = order(tenant="t1", customer_email="a@b.co")
    msg.attachment.Pack(item)
    d = evaluate(shop_policy, grpc_ctx(frame(msg.SerializeToString())))
    # the packed Item is mapped (the set knows its type), so the detector reads its sku
    assert d.rule_ids == ("vulnerability.pathTraversal",)
    msg.attachment.type_url = "type.googleapis.com/not.in.the.Set"
    d = evaluate(shop_policy, grpc_ctx(frame(msg.SerializeToString())))
    assert (d.action, d.rule_ids[0]) == ("BLOCK", "request.body.malformed")


def test_explain_shows_the_grpc_method_as_the_contract_that_ran(
    shop_policy: CompiledPolicy, messages: dict[str, Any], grpc_ctx: Ctx
) -> None:
    from extauthz.engine.explain import explain

    ctx = grpc_ctx(frame(valid(messages, customer_email="x")))
    decision = evaluate(shop_policy, ctx)
    traces = {p.name: p for p in explain(shop_policy, ctx, decision).phases}
    contract = traces["contract"]
    assert contract.ran and contract.detail == "gRPC method /shop.v1.Orders/CreateOrder"
