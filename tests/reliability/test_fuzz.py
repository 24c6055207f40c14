"""Property-based fuzzing: whatever Envoy (or an attacker behind it) sends, a decision comes back.

Invariants for every input: the engine returns a ``Decision`` (never raises, never the
``engine.internalError`` fail-safe, which would mean a bug), the adapter + servicer return a
``CheckResponse`` Envoy can act on (OK, or PERMISSION_DENIED with an HTTP status). Nothing is
timed (pytest's timeout is the hang guard): the hostile bodies must be stopped by the limit
meant for them, and their cost is counted work that grows linearly with their size
(``_bounded.assert_linear``). Example counts are small so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from _bounded import assert_linear
from _reliability_support import (
    ACTIVATE,
    CATALOGUE_POLICY,
    DEMO_POLICY,
    GOOD_ACTIVATION,
    check_request,
)
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.context import (
    Body,
    BodyJson,
    ClientInfo,
    HttpRequest,
    Identity,
    RequestContext,
)
from extauthz.decision import Decision
from extauthz.engine import InMemoryReplayStore, evaluate
from extauthz.envoy import check_request_to_context
from extauthz.policy import load_policy
from extauthz.server.app import Server, build_state
from extauthz.server.config import ServerConfig
from extauthz.server.grpc_service import AuthorizationServicer

ACTIONS = {"ALLOW", "BLOCK", "MONITOR"}
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,  # not timed: Hypothesis' deadline is flaky on a shared machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # reproducible in CI unless asked
)

DEMO = load_policy(DEMO_POLICY)
CATALOGUE = load_policy(CATALOGUE_POLICY)
POLICIES = [DEMO, CATALOGUE]

# --- strategies ----------------------------------------------------------------------------

# Protobuf strings must be valid UTF-8: no lone surrogates anywhere a proto string goes.
text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)
tokens = st.sampled_from(
    ["..", ".", "%2e%2e", "%2f", "%2F", "%252e", "%00", "%c0%ae", "%ff", "%", "\\", "//", ";",
     "admin", "healthz", "api", "v1", "licenses", "activate", "webhooks", "stripe", "github",
     "\x00", "\r\n", "\uff41dmin", "?", "#", "&", "=", "*", "**", "{id}", "\u202e"]
)  # fmt: skip
path_strategy = st.one_of(
    st.lists(st.one_of(tokens, text), max_size=8).map(lambda parts: "/" + "/".join(parts)),
    st.lists(st.one_of(tokens, text), max_size=8).map("".join),
    st.sampled_from(["/healthz", ACTIVATE, "/webhooks/stripe", "/admin/x", "/api/v1/licenses/7"]),
)
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "get", "pOsT", "HEAD", "OPTIONS", "*", ""]),
    text,
)
header_names = st.one_of(
    st.sampled_from(
        ["content-type", "content-length", "stripe-signature", "x-hub-signature-256",
         "x-github-delivery", "x-github-event", "x-request-id", "authorization", "host",
         "x-envoy-auth-partial-body", "x-forwarded-proto", "user-agent", ":authority"]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_:0123456789", min_size=1, max_size=20),
)  # fmt: skip
content_types = st.one_of(
    st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "application/vnd.api+json",
         "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
         "APPLICATION/JSON", "application/json\r\nx-evil: 1", ""]
    ),
    text,
)  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(
        st.one_of(text, st.sampled_from(["__proto__", "constructor", "prototype", "$ne", "$where",
                                         "tenantId", "callbackUrl", "deviceId"])),
        children,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


def _truncate(data: bytes, cut: int) -> bytes:
    return data[: max(0, len(data) - 1 - cut % max(1, len(data)))]


def _dup_keys(value: dict[str, Any]) -> bytes:
    inner = json.dumps(value)[1:-1]
    extra = '"tenantId":"evil"'
    return ("{" + ",".join(x for x in (inner, extra, extra) if x) + "}").encode()


bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.binary(max_size=40).map(lambda b: b"\xff\xfe" + b + b"\xc0\xae"),  # invalid UTF-8
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(json_values, st.integers(0, 1000)).map(
        lambda t: _truncate(json.dumps(t[0]).encode(), t[1])
    ),
    st.dictionaries(text, json_values, max_size=4).map(_dup_keys),
    st.builds(
        lambda extra: json.dumps({**GOOD_ACTIVATION, **extra}).encode(),
        st.dictionaries(st.sampled_from([*GOOD_ACTIVATION, "x"]), json_values, max_size=3),
    ),
    st.sampled_from(
        [b"NaN", b"[Infinity]", b"1e999999", b"-", b'"\\ud800"', b"{}" * 50, "\ufeff{}".encode()]
    ),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
claims = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "sub": st.one_of(text, st.integers()),
            "tenant": st.one_of(text, st.none(), st.lists(text)),
        },
        optional={"scope": st.one_of(text, st.lists(text)), "scp": st.lists(text)},
    ),
)


def _assert_decision(decision: Any) -> None:
    assert type(decision) is Decision
    assert decision.action in ACTIONS
    assert 200 <= decision.status_code <= 599
    assert "engine.internalError" not in decision.rule_ids, decision.reason


def _evaluate(policy: Any, ctx: RequestContext, **kw: Any) -> Decision:
    return evaluate(policy, ctx, replay_store=InMemoryReplayStore(max_entries=16), **kw)


# --- the engine, fed RequestContexts directly -------------------------------------------------


@FUZZ
@given(
    policy=st.sampled_from(POLICIES),
    method=methods,
    path=path_strategy,
    headers=st.dictionaries(header_names, text, max_size=6),
    query=st.dictionaries(text, text, max_size=4),
    content_type=st.one_of(st.none(), content_types),
    raw=bodies,
    sample=st.one_of(st.none(), json_values),
    partial=st.booleans(),
    size=st.integers(min_value=-5, max_value=1 << 40),
    authenticated=st.booleans(),
    route_id=st.one_of(st.none(), st.sampled_from(["license-activate", "admin", "nope", ""])),
)
def test_engine_always_decides(
    policy: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    content_type: str | None,
    raw: bytes | None,
    sample: Any,
    partial: bool,
    size: int,
    authenticated: bool,
    route_id: str | None,
) -> None:
    body = Body(
        present=raw is not None or sample is not None,
        size_bytes=size,
        raw=raw,
        json=BodyJson(sample) if sample is not None else None,
        partial=partial,
    )
    request = HttpRequest(
        method=method,
        path=path,
        headers=headers,
        query=query,
        content_type=content_type,
        route_id=route_id,
        body=body,
    )
    identity = Identity(authenticated, "alice", "acme", ("a",), {"sub": "alice"})
    ctx = RequestContext(request=request, identity=identity, client=ClientInfo("10.0.0.1", None))
    _assert_decision(_evaluate(policy, ctx))


# --- the adapter and the servicer, fed CheckRequests ---------------------------------------------


def _servicer() -> AuthorizationServicer:
    config = ServerConfig(policy_path=str(DEMO_POLICY), http_port=0, hot_reload=False)
    return AuthorizationServicer(build_state(config))


SERVICER = _servicer()


def _serve_bytes(data: bytes) -> CheckResponse:
    out = asyncio.run(SERVICER.check(data, None))
    assert isinstance(out, bytes)
    return CheckResponse.FromString(out)


def _assert_response(resp: CheckResponse) -> None:
    assert resp.status.code in (0, 7), resp.status
    kind = resp.WhichOneof("http_response")
    if resp.status.code == 0:
        assert kind == "ok_response"
    else:
        assert kind == "denied_response"
        assert 400 <= resp.denied_response.status.code <= 599
        body = json.loads(resp.denied_response.body)
        assert body["code"] in ("POLICY_VIOLATION", "INVALID_REQUEST"), body
        assert "engine.internalError" not in body["ruleHits"], body


@FUZZ
@given(
    method=methods,
    path=path_strategy,
    headers=st.dictionaries(header_names, text, max_size=6),
    raw=bodies,
    string_body=st.one_of(st.none(), text),
    claims=claims,
    drop=st.sets(st.sampled_from(["attributes", "http", "headers", "source", "host"])),
    extensions=st.dictionaries(st.sampled_from(["route_id", "service", "env", "x"]), text),
)
def test_adapter_and_servicer_always_answer(
    method: str,
    path: str,
    headers: dict[str, str],
    raw: bytes | None,
    string_body: str | None,
    claims: dict[str, Any] | None,
    drop: set[str],
    extensions: dict[str, str],
) -> None:
    req = check_request(method, path, headers=headers, body=raw, claims=claims)
    attrs = req.attributes
    for key, value in extensions.items():
        attrs.context_extensions[key] = value
    if string_body is not None and raw is None:
        attrs.request.http.body = string_body
    if "headers" in drop:
        attrs.request.http.ClearField("headers")
    if "host" in drop:
        attrs.request.http.ClearField("host")
    if "source" in drop:
        attrs.ClearField("source")
    if "http" in drop:
        attrs.request.ClearField("http")
    if "attributes" in drop:
        req.ClearField("attributes")
    # The pure adapter: a context, or its one well-named error; nothing else.
    try:
        ctx = check_request_to_context(req)
    except Exception as exc:
        assert type(exc).__name__ == "InvalidContext", repr(exc)
    else:
        _assert_decision(_evaluate(DEMO, ctx))
    # The servicer's whole path (bytes in, bytes out), as grpcio would call it.
    _assert_response(_serve_bytes(req.SerializeToString()))


@FUZZ
@given(data=st.binary(max_size=400))
def test_servicer_answers_bytes_that_are_not_a_check_request(data: bytes) -> None:
    _assert_response(_serve_bytes(data))


# --- hostile bodies at full size -----------------------------------------------------------------


def _deep(n: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * n + b"]" * n
    if kind == "object":
        return b'{"a":' * n + b"1" + b"}" * n
    return b'{"licenseKey":' + b"[" * n  # truncated and deep


HOSTILE_BODIES: dict[str, tuple[str, bytes]] = {
    "100k-deep-arrays": (ACTIVATE, _deep(100_000, "array")),
    "100k-deep-objects": (ACTIVATE, _deep(100_000, "object")),
    "100k-deep-truncated": (ACTIVATE, _deep(100_000, "open")),
    "deep-inside-strings": (ACTIVATE, b'{"a":"' + b"[" * 200_000 + b'"}'),
    "million-element-array": ("/api/v1/bulk", b"[" + b"0," * 999_999 + b"0]"),
    "million-element-nested": ("/api/v1/bulk", b'{"a":[' + b"{}," * 999_999 + b"{}]}"),
    "million-keys": (
        "/api/v1/bulk",
        b"{" + b",".join(b'"k%d":0' % i for i in range(300_000)) + b"}",
    ),
    "huge-string": (
        ACTIVATE,
        json.dumps({**GOOD_ACTIVATION, "deviceId": "a" * 1_000_000}).encode(),
    ),
    "huge-adversarial-string": (
        "/api/v1/bulk",
        json.dumps({"q": "%25" * 300_000 + "/../x", "u": "http://" + "[" * 200_000}).encode(),
    ),
    "huge-escapes": ("/api/v1/bulk", b'["' + b"\\u0000" * 500_000 + b'"]'),
    "invalid-utf8-megabyte": (ACTIVATE, b"\xc0\xae" * 500_000),
    "duplicate-keys-many": ("/api/v1/bulk", b"{" + b'"a":1,' * 200_000 + b'"a":2}'),
    "big-number": ("/api/v1/bulk", b"[" + b"9" * 500_000 + b"]"),
    "oversize-8mb": ("/api/v1/bulk", b"[" + b"0," * 4_000_000 + b"0]"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_body_is_decided(name: str) -> None:
    path, body = HOSTILE_BODIES[name]
    ctype = {"content-type": "application/json"}
    req = check_request(
        "POST", path, headers=ctype, body=body, claims={"sub": "a", "tenant": "acme"}
    )
    ctx = check_request_to_context(req)
    for policy in POLICIES:
        decision = _evaluate(policy, ctx)
        _assert_decision(decision)
        # None of these is a clean request: each must be refused.
        assert decision.action == "BLOCK", (name, decision.reason)
    resp = _serve_bytes(req.SerializeToString())
    _assert_response(resp)
    assert resp.status.code == 7


# The same shapes as functions of their size n: decided with work linear in n (counted).
BODY_FAMILIES: dict[str, Any] = {
    "deep-arrays": lambda n: _deep(n, "array"),
    "deep-objects": lambda n: _deep(n, "object"),
    "deep-truncated": lambda n: _deep(n, "open"),
    "deep-inside-strings": lambda n: b'{"a":"' + b"[" * n + b'"}',
    "element-array": lambda n: b"[" + b"0," * n + b"0]",
    "element-nested": lambda n: b'{"a":[' + b"{}," * n + b"{}]}",
    "keys": lambda n: b"{" + b",".join(b'"k%d":0' % i for i in range(n)) + b"}",
    "string": lambda n: json.dumps({**GOOD_ACTIVATION, "deviceId": "a" * n}).encode(),
    "adversarial-string": lambda n: json.dumps({"q": "%25" * n + "/../x", "u": "http://" + "[" * n}).encode(),
    "escapes": lambda n: b'["' + b"\\u0000" * n + b'"]',
    "invalid-utf8": lambda n: b"\xc0\xae" * n,
    "duplicate-keys": lambda n: b"{" + b'"a":1,' * n + b'"a":2}',
    "big-number": lambda n: b"[" + b"9" * n + b"]",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BODY_FAMILIES))
def test_hostile_body_work_is_linear_in_its_size(name: str) -> None:
    make = BODY_FAMILIES[name]

    def decide(body: bytes) -> Decision:
        req = check_request(
            "POST", "/api/v1/bulk", headers={"content-type": "application/json"}, body=body
        )
        decision = evaluate(CATALOGUE, check_request_to_context(req))
        _assert_decision(decision)
        return decision

    assert_linear(decide, make, 2_000, name)


def test_hostile_bodies_hit_the_right_limit() -> None:
    """The catalogue route ``bulk`` accepts 8 MiB bodies: the limits, not the size, must fire."""
    expect = {
        "100k-deep-arrays": "limit.json.depth",
        "million-element-array": "limit.array.max",
        "million-element-nested": "limit.array.max",
        "duplicate-keys-many": "request.body.duplicateKey",  # issue 24: lenient, refused
        "oversize-8mb": "limit.body.max",
    }
    for name, rule in expect.items():
        path, body = HOSTILE_BODIES[name]
        if path == ACTIVATE:
            path = "/api/v1/bulk"
        req = check_request("POST", path, headers={"content-type": "application/json"}, body=body)
        decision = evaluate(CATALOGUE, check_request_to_context(req))
        assert rule in decision.rule_ids, (name, decision.rule_ids, decision.reason)


# --- a few of those through the real gRPC server over a Unix socket ------------------------------


@pytest.fixture
def grpc_servers() -> Iterator[dict[str, str]]:
    """``extauthz.server.app.Server`` on a background loop, once per gRPC transport (the
    built-in server and grpcio), each serving a real Unix socket."""
    sock_dir = Path(tempfile.mkdtemp(prefix="cs-fz-", dir="/tmp"))
    paths = {t: str(sock_dir / f"{t}.sock") for t in ("builtin", "grpcio")}
    loop = asyncio.new_event_loop()
    servers = [
        Server(
            build_state(
                ServerConfig(
                    policy_path=str(DEMO_POLICY),
                    unix_socket=path,
                    http_port=0,
                    hot_reload=False,
                    grpc_transport=transport,
                )
            )
        )
        for transport, path in paths.items()
    ]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    for server in servers:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=20)
    try:
        yield paths
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def _comparable(answer: CheckResponse) -> str:
    """The answer with its decision id (new per request where the request names none)
    replaced, so two servers' answers to one request compare equal."""
    text = json_format.MessageToJson(answer, sort_keys=True)
    decision_id = answer.dynamic_metadata.fields["decisionId"].string_value
    return text.replace(decision_id, "<id>") if decision_id else text


def test_fuzzed_requests_through_real_grpc(grpc_servers: dict[str, str]) -> None:
    """Random CheckRequests, raw garbage and the hostile bodies over gRPC on a Unix socket, to
    the built-in gRPC server and to grpcio: each answers every one, and both alike."""
    rng = random.Random(8)
    requests: list[bytes] = []
    for _ in range(40):
        path = "/" + "/".join(
            rng.choice(["..", "%2e%2e", "admin", "healthz", "%00", "a"]) for _ in range(4)
        )
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        requests.append(
            check_request(rng.choice(["GET", "post", "X"]), path, body=body).SerializeToString()
        )
    requests += [bytes(rng.randrange(256) for _ in range(50)) for _ in range(10)]
    requests.append(CheckRequest().SerializeToString())  # every field missing
    for name in ("100k-deep-arrays", "million-element-array", "invalid-utf8-megabyte"):
        path, body = HOSTILE_BODIES[name]
        req = check_request("POST", path, headers={"content-type": "application/json"}, body=body)
        requests.append(req.SerializeToString())
    answers: dict[str, list[str]] = {}
    for transport, path in grpc_servers.items():
        with grpc.insecure_channel(
            f"unix:{path}", options=[("grpc.max_send_message_length", 16 << 20)]
        ) as channel:
            call = channel.unary_unary(
                "/envoy.service.auth.v3.Authorization/Check",
                request_serializer=lambda b: b,
                response_deserializer=CheckResponse.FromString,
            )
            got = answers.setdefault(transport, [])
            for data in requests:
                # An RPC error would raise here: none may occur (the 30 s is a hang guard).
                response = call(data, timeout=30)
                _assert_response(response)
                got.append(_comparable(response))
    assert answers["builtin"] == answers["grpcio"]
