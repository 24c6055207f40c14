"""Fixtures: the REAL ``extauthz serve`` (demo policy), gRPC and HTTP, each on a Unix socket
and on TCP: every test taking ``kind`` runs over all four."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from extauthz.devstack import free_port
from extauthz.devstack.server import DEMO_POLICY, ServerProcess


def short_tmpdir() -> Path:
    """Unix socket paths must stay under ~107 bytes: pytest's tmp_path can be too long."""
    return Path(tempfile.mkdtemp(prefix="cs-client-", dir="/tmp"))


class Pdp:
    """One real server process, restartable on the same socket and port."""

    def __init__(self, policy: Path = DEMO_POLICY) -> None:
        self.dir = short_tmpdir()
        self.socket = self.dir / "pdp.sock"
        self.http_socket = self.dir / "http.sock"
        self.port = free_port()
        self.http_port = free_port()
        self.policy = policy
        self.process: ServerProcess | None = None

    def target(self, kind: str) -> str:
        return {
            "unix": f"unix://{self.socket}",
            "tcp": f"127.0.0.1:{self.port}",
            "http-unix": f"http+unix://{self.http_socket}",
            "http-tcp": f"http://127.0.0.1:{self.http_port}",
        }[kind]

    def start(self) -> Pdp:
        self.process = ServerProcess(
            policy=self.policy,
            unix_socket_path=self.socket,
            grpc_port=self.port,
            http_port=self.http_port,
            http_unix_socket_path=self.http_socket,
            workdir=self.dir,
        ).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def close(self) -> None:
        try:
            if self.process is not None:
                self.process.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pdp() -> Iterator[Pdp]:
    """Shared by the read-only tests of a module."""
    server = Pdp().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_pdp() -> Iterator[Pdp]:
    """A server a test may stop, restart or give another policy."""
    server = Pdp()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["unix", "tcp", "http-unix", "http-tcp"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
