"""Every door gives the same decision for the same request: one decider behind them all.

The doors: gRPC ``Check``, ``POST /v1/check``, Envoy's HTTP mode (``/ext_authz/...``),
``POST /v1/evaluate``, ``POST /evaluate`` on a real server (real sockets), and the embedded
ASGI and WSGI middleware in process. Each case goes through all seven and every answer must
agree, a denial's body code included wherever the door writes one; so must the internal-error
denial, met through a policy source that fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _decider_support import (
    DEMO_POLICY,
    DOORS,
    Case,
    FailingSource,
    Verdict,
    middlewares,
    through_asgi,
    through_server,
    through_wsgi,
)

from extauthz.policy import load_policy
from extauthz.server.app import Server, build_state
from extauthz.server.config import ServerConfig
from extauthz.server.state import ServerState

GOOD = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "dev-1",
    "tenantId": "acme",
    "callbackUrl": "https://ok.example/cb",
}
ALICE = {"sub": "alice", "tenant": "acme", "scope": "licenses:write"}
JSON = {"content-type": "application/json"}
ACTIVATE = "/api/v1/licenses/activate"

CASES = [
    Case("health", "GET", "/healthz"),
    Case("admin", "GET", "/admin/users"),
    Case("unmatched", "GET", "/nowhere/at/all"),
    Case("activate", "POST", ACTIVATE, JSON, json.dumps(GOOD).encode(), ALICE),
    Case("anonymous", "POST", ACTIVATE, JSON, json.dumps(GOOD).encode()),
    Case("tenant", "POST", ACTIVATE, JSON, json.dumps({**GOOD, "tenantId": "x"}).encode(), ALICE),
    Case("malformed", "POST", ACTIVATE, JSON, b'{"licenseKey": "AB', ALICE),
    Case("traversal", "GET", "/api/v1/licenses/..%2f..%2fetc%2fpasswd", claims=ALICE),
]

StartServer = Callable[..., Awaitable[tuple[Server, str]]]


@pytest.fixture
async def start_server(short_tmp: Path, free_port: Callable[[], int]) -> AsyncIterator[StartServer]:
    """``await start(state_factory=None)``: a server on a Unix gRPC socket and a TCP HTTP port."""
    servers: list[Server] = []

    async def start(
        state_factory: Callable[[ServerConfig], ServerState] = build_state,
    ) -> tuple[Server, str]:
        socket = str(short_tmp / f"pdp{len(servers)}.sock")
        config = ServerConfig(
            unix_socket=socket,
            http_port=free_port(),
            policy_path=str(DEMO_POLICY),
            hot_reload=False,
        )
        server = Server(state_factory(config))
        servers.append(server)
        return await server.start(), socket

    try:
        yield start
    finally:
        for server in servers:
            await server.stop(0)


async def every_door(server: Server, socket: str, policy: Any, case: Case) -> dict[str, Verdict]:
    verdicts = await through_server(server, socket, case)
    for name, embedded in middlewares(policy):
        if name == "asgi":
            verdicts[name] = await through_asgi(embedded, case)
        else:
            verdicts[name] = through_wsgi(embedded, case)
    assert set(verdicts) == set(DOORS)
    return verdicts


def assert_alike(verdicts: dict[str, Verdict]) -> Verdict:
    """The same decision at every door; the same body code at every door that writes one."""
    decisions = {door: v.without_code() for door, v in verdicts.items()}
    assert len(set(decisions.values())) == 1, decisions
    codes = {door: v.code for door, v in verdicts.items() if v.code is not None}
    assert len(set(codes.values())) <= 1, codes
    return next(iter(verdicts.values()))


async def test_every_door_decides_each_case_alike(start_server: StartServer) -> None:
    server, socket = await start_server()
    policy = load_policy(DEMO_POLICY)
    seen = {}
    for case in CASES:
        verdict = assert_alike(await every_door(server, socket, policy, case))
        seen[case.name] = (verdict.action, verdict.status, verdict.hits, verdict.route)
    # The cases are worth comparing: allowed and denied, by several kinds of check.
    assert seen["health"][:2] == ("ALLOW", 200) and seen["activate"][0] == "ALLOW"
    assert seen["admin"][2] == ("admin.denied",)
    assert seen["unmatched"][2] == ("route.unmatched",)
    assert seen["anonymous"][1] == 403 and "auth.required" in seen["anonymous"][2]
    assert "tenant.binding" in seen["tenant"][2]
    assert seen["malformed"][1] == 400
    assert len({v[1:3] for v in seen.values() if v[0] == "BLOCK"}) >= 5


async def test_every_door_gives_the_one_internal_error_denial(start_server: StartServer) -> None:
    def failing(config: ServerConfig) -> ServerState:
        state = build_state(config)
        state.policy_source = FailingSource()
        return state

    server, socket = await start_server(failing)
    for case in CASES[:2]:
        verdicts = await every_door(server, socket, FailingSource(), case)
        verdict = assert_alike(verdicts)
        assert (verdict.action, verdict.status, verdict.hits) == (
            "BLOCK",
            500,
            ("server.internalError",),
        )
        # Every door that writes a denial body says INTERNAL_ERROR (the middleware included).
        assert {d for d, v in verdicts.items() if v.code == "INTERNAL_ERROR"} == {
            "grpc", "v1/check", "http_authz", "asgi", "wsgi"
        }  # fmt: skip
    errors = server.state.metrics.errors.labels("internal_error")._value.get()
    assert errors == 2 * 5  # each server door counted each failure once
