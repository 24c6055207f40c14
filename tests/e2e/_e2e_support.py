"""A real stack: echo upstream, ``extauthz serve`` on a Unix socket (gRPC, or HTTP for Envoy's
``http_service`` mode) or TCP, real Envoy; optionally an access log. A module of its own so
that test modules with their own stack (policy, PDP variant) import it, not the conftest."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

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
    mode: str = "grpc"
    access_log: Path | None = None

    @property
    def url(self) -> str:
        return self.envoy.url

    def access_lines(self) -> list[str]:
        """Envoy's access-log lines so far (``access_log=True`` stacks)."""
        try:
            return self.access_log.read_text().splitlines() if self.access_log else []
        except OSError:
            return []


def run_stack(
    tcp: bool,
    mode: str = "grpc",
    *,
    policy: str | PathLike[str] = DEMO_POLICY,
    access_log: bool = False,
    server_class: type[ServerProcess] = ServerProcess,
) -> Iterator[Stack]:
    """The stack's parts, always stopped; ``server_class`` runs the PDP (a test's variant of
    ``extauthz serve``), ``access_log`` adds Envoy's with the mode's decision fields."""
    workdir = Path(tempfile.mkdtemp(prefix="cs-e2e-", dir="/tmp"))
    socket_path = str(workdir / "pdp.sock")
    http_mode = mode == "http"
    grpc_port = free_port() if tcp else 0
    upstream = UpstreamThread().start()
    server = server_class(
        policy=policy,
        unix_socket_path=None if tcp or http_mode else socket_path,
        http_unix_socket_path=socket_path if http_mode else None,
        grpc_port=grpc_port,
        http_port=free_port(),
        workdir=workdir / "server",
    )
    envoy: EnvoyProcess | None = None
    log_path = workdir / "access.log" if access_log else None
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
            access_log=log_path,  # the decision under the mode's metadata keys
        )
        envoy = EnvoyProcess(config, workdir=workdir / "envoy").start()
        yield Stack(envoy, server, upstream, mode, log_path)
    finally:
        if envoy is not None:
            envoy.stop()
        server.kill()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
