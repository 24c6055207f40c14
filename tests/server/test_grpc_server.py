"""The gRPC server over a real Unix socket with a real grpc client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from typing import Any

import grpc
import pytest
from _server_support import CHECK_METHOD, check_request, stripe_event, stripe_headers
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz import ReplayStoreUnavailable, SocketInUse
from extauthz.server.app import build_state
from extauthz.server.config import ServerConfig
from extauthz.server.state import ServerState

AUTHZ = "envoy.service.auth.v3.Authorization"


def body_of(resp: CheckResponse) -> dict[str, Any]:
    return json.loads(resp.denied_response.body)


async def test_allow_and_block_over_the_socket(start_inproc, check, socket_path) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    ok = await check(check_request("GET", "/healthz"))
    assert ok.status.code == 0 and ok.WhichOneof("http_response") == "ok_response"
    headers = {h.header.key: h.header.value for h in ok.ok_response.headers}
    assert headers["x-contractshield-decision"] == "ALLOW"
    assert headers["x-contractshield-route"] == "health"
    denied = await check(check_request("GET", "/admin/users"))
    assert denied.status.code == 7 and denied.denied_response.status.code == 403
    assert body_of(denied)["code"] == "POLICY_VIOLATION"
    assert "admin.denied" in body_of(denied)["ruleHits"]


async def test_socket_mode_defaults_to_0660(start_inproc, socket_path) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    st = os.stat(socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


async def test_socket_mode_is_configurable(start_inproc, socket_path) -> None:  # type: ignore[no-untyped-def]
    await start_inproc(socket_mode=0o600)
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600


async def test_stale_socket_is_replaced(start_inproc, check, socket_path) -> None:  # type: ignore[no-untyped-def]
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(socket_path)
    stale.close()  # the file stays; nothing listens: what a crashed server leaves behind
    assert os.path.exists(socket_path)
    await start_inproc()
    assert (await check(check_request())).status.code == 0


async def test_live_socket_is_refused(start_inproc, check, socket_path) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    with pytest.raises(SocketInUse, match="another server"):
        await start_inproc()
    assert (await check(check_request())).status.code == 0  # the first one still serves


async def test_not_a_socket_is_never_removed(start_inproc, socket_path) -> None:  # type: ignore[no-untyped-def]
    with open(socket_path, "w") as f:
        f.write("precious")
    with pytest.raises(Exception, match="not a socket"):
        await start_inproc()
    with open(socket_path) as f:
        assert f.read() == "precious"


async def test_stop_removes_the_socket(start_inproc, socket_path) -> None:  # type: ignore[no-untyped-def]
    server = await start_inproc()
    await server.stop(0)
    assert not os.path.exists(socket_path)


class BrokenSource:
    """A policy source whose ``current()`` fails: an internal error, not a policy decision."""

    last_error = None

    def current(self) -> Any:
        raise RuntimeError("boom: internal")


async def test_internal_error_is_a_500_denial_not_an_rpc_error(start_inproc, check) -> None:  # type: ignore[no-untyped-def]
    def broken(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.policy_source = BrokenSource()
        return state

    server = await start_inproc(broken)
    resp = await check(check_request("GET", "/healthz"))
    assert resp.status.code == 7
    assert resp.denied_response.status.code == 500
    body = body_of(resp)
    assert body["code"] == "INTERNAL_ERROR" and "error id" in body["error"]
    assert "boom" not in resp.denied_response.body  # the exception text stays in the log
    errors = server.state.metrics.errors.labels("internal_error")._value.get()
    assert errors == 1


class SlowStore:
    """A replay store that answers only when released (a hung Redis)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.answered = False

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        await self.release.wait()
        self.answered = True
        return True


@pytest.mark.parametrize("fail_open", [False, True])
async def test_store_slower_than_the_deadline_gets_an_explicit_answer(  # type: ignore[no-untyped-def]
    start_inproc, check, fail_open: bool
) -> None:
    store = SlowStore()

    def slow(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.replay_store = store
        return state

    server = await start_inproc(slow, check_deadline_ms=50, replay_fail_open=fail_open)
    payload = stripe_event(f"evt_deadline_{fail_open}")
    try:
        resp = await asyncio.wait_for(  # 60 s: a hang guard, not a speed bound
            check(
                check_request(
                    "POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload
                )
            ),
            60,
        )
        # Answered at the deadline: the store has not answered (and never would, unreleased).
        assert not store.answered
    finally:
        store.release.set()
    if fail_open:
        assert resp.status.code == 0  # the operator chose to let webhooks through
    else:
        assert resp.denied_response.status.code == 503
        body = body_of(resp)
        assert "webhook.stripe.replayStoreUnavailable" in body["ruleHits"]
    assert server.state.metrics.errors.labels("timeout")._value.get() == 1


async def test_bytes_that_are_not_a_check_request_get_400(start_inproc, grpc_channel) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    raw = grpc_channel.unary_unary(CHECK_METHOD)  # no serializers: raw bytes
    resp = CheckResponse.FromString(await raw(b"\x0a\xff\xff\xff", timeout=5))
    assert resp.denied_response.status.code == 400
    assert body_of(resp)["code"] == "INVALID_REQUEST"


async def test_request_without_method_gets_400(start_inproc, check) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    req = check_request()
    req.attributes.request.http.method = ""
    resp = await check(req)
    assert resp.denied_response.status.code == 400
    assert "method" in body_of(resp)["error"]


async def test_body_above_grpc_default_4mb_is_received(start_inproc, check) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    big = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    req = check_request(
        "POST", "/api/v1/licenses/activate", body=big, headers={"content-type": "application/json"}
    )
    resp = await check(req, timeout=20)
    assert resp.denied_response.status.code in (
        400,
        403,
        413,
    )  # a policy answer, not RESOURCE_EXHAUSTED
    assert "limit.body.max" in body_of(resp)["ruleHits"]


async def health_status(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return resp.status


class FlakyStore:
    """A replay store with a ``ping`` that can be switched off (a Redis outage)."""

    def __init__(self) -> None:
        self.up = True

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        if not self.up:
            raise ReplayStoreUnavailable("down")
        return True

    async def ping(self) -> bool:
        if not self.up:
            raise ReplayStoreUnavailable("connection refused")
        return True


async def wait_status(
    channel: grpc.aio.Channel, service: str, want: int, timeout: float = 5.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await health_status(channel, service) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health of {service!r} never became {want}")


async def test_grpc_health_follows_readiness_and_drain(start_inproc, grpc_channel) -> None:  # type: ignore[no-untyped-def]
    store = FlakyStore()

    def flaky(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.replay_store = store
        return state

    server = await start_inproc(flaky)
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    for service in ("", AUTHZ):
        assert await health_status(grpc_channel, service) == serving
    store.up = False  # nobody calls us: the watcher notices by itself
    await wait_status(grpc_channel, AUTHZ, not_serving)
    assert await health_status(grpc_channel, "") == not_serving
    store.up = True
    await wait_status(grpc_channel, AUTHZ, serving)
    await server.health.drain()  # the first step of stop(): NOT_SERVING before refusing RPCs
    assert await health_status(grpc_channel, "") == not_serving
    assert await health_status(grpc_channel, AUTHZ) == not_serving


class PausingStore:
    """A replay store that answers after 0.3 s: a check that is in flight for a while."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        self.entered.set()
        await asyncio.sleep(0.3)
        return True


async def test_drain_finishes_in_flight_checks_and_refuses_new_ones(
    start_inproc, check, socket_path
) -> None:  # type: ignore[no-untyped-def]
    store = PausingStore()

    def pausing(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.replay_store = store
        return state

    server = await start_inproc(pausing, check_deadline_ms=2000)
    payload = stripe_event("evt_drain")
    in_flight = asyncio.ensure_future(
        check(
            check_request("POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload)
        )
    )
    await asyncio.wait_for(store.entered.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.stop(grace=5)  # returns only after the in-flight check was answered
    assert loop.time() - started >= 0.2  # it waited for the 0.3 s claim
    resp = await asyncio.wait_for(in_flight, 2)
    assert resp.status.code == 0  # the real decision, not an RPC error
    assert not os.path.exists(socket_path)
    with pytest.raises(grpc.aio.AioRpcError):
        await check(check_request(), timeout=1)


async def test_webhook_decisions_are_marked_no_store_for_client_caches(start_inproc, check) -> None:  # type: ignore[no-untyped-def]
    await start_inproc()
    payload = stripe_event("evt_cache")
    hook = await check(
        check_request("POST", "/webhooks/stripe", headers=stripe_headers(payload), body=payload)
    )
    assert hook.status.code == 0 and hook.dynamic_metadata["cache"] == "no-store"
    plain = await check(check_request("GET", "/healthz"))
    assert "cache" not in plain.dynamic_metadata
    assert plain.dynamic_metadata["policyVersion"].startswith("sha256:")
