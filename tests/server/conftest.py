"""In-process servers (real grpc.aio on a real Unix socket) and real gRPC clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from _server_support import DEMO_POLICY, check_stub
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from extauthz.server.app import Server, build_state
from extauthz.server.config import ServerConfig
from extauthz.server.state import ServerState

StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_inproc(socket_path: str) -> AsyncIterator[StartServer]:
    """``await start(state_factory=None, **config)``: a Server on this event loop."""
    servers: list[Server] = []

    async def start(
        state_factory: Callable[[ServerConfig], ServerState] | None = None, **config: Any
    ) -> Server:
        config.setdefault("unix_socket", socket_path)
        config.setdefault("http_port", 0)
        config.setdefault("policy_path", str(DEMO_POLICY))
        config.setdefault("hot_reload", False)
        cfg = ServerConfig(**config)
        state = (state_factory or build_state)(cfg)
        server = Server(state)
        servers.append(server)
        return await server.start()

    try:
        yield start
    finally:
        for server in servers:
            await server.stop(0)


@pytest.fixture
async def grpc_channel(socket_path: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
        yield channel


@pytest.fixture
def check(grpc_channel: grpc.aio.Channel) -> Callable[..., Awaitable[CheckResponse]]:
    stub = check_stub(grpc_channel)

    async def call(req: CheckRequest, timeout: float = 5.0) -> CheckResponse:
        return await stub(req, timeout=timeout)

    return call
