"""The server's addresses as listeners (``server.listeners``): started in a loop, each owning its
socket file and naming its setting when it cannot bind; real sockets throughout."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from _server_support import DEMO_POLICY, check_request, check_stub
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extauthz import InvalidConfig
from extauthz.server.app import Server, build_state
from extauthz.server.config import ADDRESSES, UNIX_SOCKETS, ServerConfig
from extauthz.server.listeners import (
    GrpcTcpListener,
    GrpcUnixListener,
    H2TcpListener,
    H2UnixListener,
    HttpTcpListener,
    HttpUnixListener,
    Listener,
)


def make_server(**settings: Any) -> Server:
    settings.setdefault("policy_path", str(DEMO_POLICY))
    settings.setdefault("hot_reload", False)
    settings.setdefault("http_port", 0)
    settings.setdefault("decision_log", "off")
    return Server(build_state(ServerConfig(**settings)))


@pytest.fixture
def held_port() -> Iterator[int]:
    """A TCP port another process-like owner is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture
async def stopping() -> AsyncIterator[Callable[[Server], Server]]:
    servers: list[Server] = []
    yield lambda s: servers.append(s) or s  # type: ignore[func-returns-value]
    for server in servers:
        await server.stop(0)


GRPC_KINDS = {
    "builtin": [H2UnixListener, H2TcpListener],
    "grpcio": [GrpcUnixListener, GrpcTcpListener],
}


@pytest.mark.parametrize("transport", ["builtin", "grpcio"])
async def test_every_address_is_a_listener_started_in_order_and_each_answers(
    transport: str,
    short_tmp: Path,
    free_port: Callable[[], int],
    stopping: Callable[[Server], Server],
    caplog: pytest.LogCaptureFixture,
) -> None:
    grpc_sock, http_sock = str(short_tmp / "g.sock"), str(short_tmp / "h.sock")
    caplog.set_level(logging.INFO, logger="extauthz.server")
    server = stopping(
        make_server(
            unix_socket=grpc_sock,
            grpc_port=free_port(),
            grpc_host="127.0.0.1",
            http_port=free_port(),
            http_unix_socket=http_sock,
            grpc_transport=transport,
        )
    )
    await server.start()
    kinds = [type(x) for x in server.listeners]
    assert kinds == [*GRPC_KINDS[transport], HttpTcpListener, HttpUnixListener]
    for path in (grpc_sock, http_sock):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    for target in (f"unix:{grpc_sock}", f"127.0.0.1:{server.grpc_port}"):
        async with grpc.aio.insecure_channel(target) as channel:
            response = await check_stub(channel)(check_request(), timeout=5)
            assert response.status.code == 0, target
    for connector, base in (
        (aiohttp.TCPConnector(), f"http://127.0.0.1:{server.http_port}"),
        (aiohttp.UnixConnector(path=http_sock), "http://pdp"),
    ):
        async with (
            aiohttp.ClientSession(base, connector=connector) as http,
            http.get("/ready") as r,
        ):
            assert r.status == 200, base
    started = [r.getMessage() for r in caplog.records if "serving policy" in r.getMessage()]
    assert started and all(x.describe() in started[0] for x in server.listeners)
    await server.stop(0)
    assert not os.path.exists(grpc_sock) and not os.path.exists(http_sock)


async def test_http_opens_only_once_grpc_is_serving(
    socket_path: str,
    free_port: Callable[[], int],
    stopping: Callable[[Server], Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An HTTP port that answers (a kubelet probe, a test waiting for it) means gRPC serves."""
    grpc_status: list[int] = []
    start_http = HttpTcpListener.start

    async def checked_start(listener: HttpTcpListener) -> None:
        async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            grpc_status.append(answer.status)
        await start_http(listener)

    monkeypatch.setattr(HttpTcpListener, "start", checked_start)
    server = stopping(make_server(unix_socket=socket_path, http_port=free_port()))
    await server.start()
    assert grpc_status == [health_pb2.HealthCheckResponse.SERVING] and server.http_port


async def test_http_alone_starts_no_grpc_server(
    free_port: Callable[[], int], stopping: Callable[[Server], Server]
) -> None:
    server = await stopping(make_server(http_port=free_port())).start()
    assert [type(x) for x in server.listeners] == [HttpTcpListener]
    assert server.grpc_server is None and server.grpc_port is None and server.http_port


@pytest.mark.parametrize("transport", ["builtin", "grpcio"])
@pytest.mark.parametrize(
    ("setting", "message"),
    [("grpc_port", "GRPC_PORT: cannot bind"), ("http_port", "HTTP_PORT: cannot listen on")],
)
async def test_a_later_address_that_is_taken_is_refused_and_the_socket_file_goes(
    socket_path: str, held_port: int, setting: str, message: str, transport: str
) -> None:
    server = make_server(
        unix_socket=socket_path,
        grpc_host="127.0.0.1",
        grpc_transport=transport,
        **{setting: held_port},
    )
    with pytest.raises(InvalidConfig, match=message):
        await server.start()
    assert os.path.exists(socket_path)  # bound before the taken port was tried
    await server.stop(0)  # what ``serve`` does when start-up fails
    assert not os.path.exists(socket_path)


@pytest.mark.parametrize("setting", ["http_unix_socket", "unix_socket"])
async def test_a_successors_socket_file_is_never_removed(
    setting: str, short_tmp: Path, stopping: Callable[[Server], Server]
) -> None:
    """HTTP_UNIX_SOCKET, and UNIX_SOCKET on h2 (the default): with GRPC_TRANSPORT=grpcio,
    grpcio itself unlinks UNIX_SOCKET's path when it stops, whoever holds it by then."""
    path = str(short_tmp / "s.sock")
    server = await stopping(make_server(**{setting: path})).start()
    os.unlink(path)  # a successor took the path over (after a stale-socket check)
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as successor:
        successor.bind(path)
        successor.listen()
        await server.stop(0)
        assert os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)


async def test_the_second_signal_release_removes_the_socket_files(
    short_tmp: Path, stopping: Callable[[Server], Server]
) -> None:
    grpc_sock, http_sock = str(short_tmp / "g.sock"), str(short_tmp / "h.sock")
    server = stopping(make_server(unix_socket=grpc_sock, http_unix_socket=http_sock))
    await server.start()
    server.release()
    assert not os.path.exists(grpc_sock) and not os.path.exists(http_sock)


def test_each_listener_kind_has_its_address_setting_and_the_other_way_round() -> None:
    kinds = {GrpcUnixListener: "unix", GrpcTcpListener: "tcp", HttpTcpListener: "tcp"}
    kinds |= {HttpUnixListener: "unix", H2UnixListener: "unix", H2TcpListener: "tcp"}
    leaves, todo = set(), list(Listener.__subclasses__())
    while todo:  # the concrete listeners (a shared base is not a kind of address)
        cls = todo.pop()
        todo += cls.__subclasses__()
        if not cls.__subclasses__():
            leaves.add(cls)
    assert set(kinds) == leaves
    assert {cls.setting: kind for cls, kind in kinds.items()} == {
        s.env: s.address for s in ADDRESSES
    }
    assert {s.env for s in UNIX_SOCKETS} == {"UNIX_SOCKET", "HTTP_UNIX_SOCKET"}
