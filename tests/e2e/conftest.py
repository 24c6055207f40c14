"""One real stack per module and authz mode: echo upstream, ``extauthz serve`` on a Unix socket
(gRPC, or HTTP for Envoy's ``http_service`` mode), real Envoy."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from extauthz.devstack import free_port
from extauthz.devstack.envoy import (
    CENTRALIZED_CONFIG,
    HTTP_MODE_CONFIG,
    SIDECAR_CONFIG,
    EnvoyProcess,
    render_config,
)
from extauthz.devstack.server import DEMO_POLICY, ServerProcess
from extauthz.devstack.upstream import UpstreamThread


@dataclass
class Stack:
    envoy: EnvoyProcess
    server: ServerProcess
    upstream: UpstreamThread

    @property
    def url(self) -> str:
        return self.envoy.url


def _stack(tcp: bool, mode: str = "grpc") -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="cs-e2e-", dir="/tmp"))
    socket_path = str(workdir / "pdp.sock")
    http_mode = mode == "http"
    grpc_port = free_port() if tcp else 0
    upstream = UpstreamThread().start()
    server = ServerProcess(
        policy=DEMO_POLICY,
        unix_socket_path=None if tcp or http_mode else socket_path,
        http_unix_socket_path=socket_path if http_mode else None,
        grpc_port=grpc_port,
        http_port=free_port(),
        workdir=workdir / "server",
    )
    envoy: EnvoyProcess | None = None
    try:
        server.start()
        config = render_config(
            CENTRALIZED_CONFIG if tcp else HTTP_MODE_CONFIG if http_mode else SIDECAR_CONFIG,
            listen_port=free_port(),
            admin_port=free_port(),
            pdp_socket=None if tcp else socket_path,
            pdp_address=("127.0.0.1", grpc_port) if tcp else None,
            upstream=upstream.address,
            health_interval="1s",
        )
        envoy = EnvoyProcess(config, workdir=workdir / "envoy").start()
        yield Stack(envoy, server, upstream)
    finally:
        if envoy is not None:
            envoy.stop()
        server.kill()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=["grpc", "http"], ids=["grpc-mode", "http-mode"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The sidecar stack in each ext_authz mode: every test using it runs in both."""
    yield from _stack(tcp=False, mode=request.param)


@pytest.fixture(scope="module")
def tcp_stack() -> Iterator[Stack]:
    yield from _stack(tcp=True)
