"""``extauthz serve`` as a real process: signals, exit codes, socket ownership, TCP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc
from _server_support import check_request, check_stub

from extauthz.server.socket import is_live


def test_sigterm_drains_exits_0_and_removes_socket(start_server, socket_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(unix_socket_path=socket_path)
    assert is_live(socket_path)
    assert server.stop() == 0
    assert not os.path.exists(socket_path)
    assert "draining" in server.log_tail()


def test_sigterm_the_moment_the_socket_is_live_still_drains(start_server, socket_path) -> None:  # type: ignore[no-untyped-def]
    """The signal handlers are in place before any socket opens: a SIGTERM sent as soon as the
    socket answers (what a supervisor may do) drains, never the default action's kill (-15).
    Three starts: with the handlers installed after start-up, about one in five was killed."""
    for _ in range(3):
        server = start_server(unix_socket_path=socket_path, http_port=0, wait=False)
        deadline = time.monotonic() + 30
        while not (os.path.exists(socket_path) and is_live(socket_path)):
            assert server.process.poll() is None, server.log_tail()
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.0005)
        server.signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0, server.log_tail()
        assert not os.path.exists(socket_path)


def test_sigint_also_exits_0(start_server, socket_path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(unix_socket_path=socket_path)
    server.signal(signal.SIGINT)
    assert server.process.wait(timeout=10) == 0
    assert not os.path.exists(socket_path)


def test_second_instance_refuses_a_live_socket(start_server, socket_path, short_tmp) -> None:  # type: ignore[no-untyped-def]
    first = start_server(unix_socket_path=socket_path)
    argv = [
        sys.executable,
        "-m",
        "extauthz",
        "serve",
        "--policy",
        str(first.policy),
        "--unix-socket",
        socket_path,
        "--http-port",
        "0",
    ]
    second = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**os.environ, "HOT_RELOAD": "false"}
    )
    assert second.returncode == 1
    assert "another server is answering" in second.stderr and socket_path in second.stderr
    assert is_live(socket_path)  # the first one keeps its socket
    assert first.process.poll() is None


def test_invalid_policy_exits_2_with_the_problem(short_tmp) -> None:  # type: ignore[no-untyped-def]
    bad = short_tmp / "bad.yaml"
    bad.write_text("routes: 3\n")
    argv = [
        sys.executable,
        "-m",
        "extauthz",
        "serve",
        "--policy",
        str(bad),
        "--http-port",
        "0",
        "--unix-socket",
        str(short_tmp / "s.sock"),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "bad.yaml" in result.stderr
    assert not (short_tmp / "s.sock").exists()


def test_grpc_over_tcp(start_server, free_port) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    start_server(grpc_port=port)

    async def call() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            resp = await check_stub(channel)(check_request("GET", "/admin/x"), timeout=5)
            return resp.denied_response.status.code

    assert asyncio.run(call()) == 403


def test_second_signal_exits_at_once(start_server, socket_path) -> None:  # type: ignore[no-untyped-def]
    """An open health Watch stream holds the drain; a second SIGTERM ends it.

    Not timed: the grace is 600 s, so an exit within the 60 s hang guard, with the forced
    exit's code 1 (a drained exit is 0), can only be the second signal's doing.
    """
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = start_server(unix_socket_path=socket_path, env={"GRACE_SECONDS": "600"})
    seen: list[int] = []
    channel = grpc.insecure_channel(f"unix:{socket_path}")
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

    def watch() -> None:
        try:
            for update in stream:
                seen.append(update.status)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30  # hang guard
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [health_pb2.HealthCheckResponse.SERVING]
        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 30  # hang guard: the drain turns health off
        while health_pb2.HealthCheckResponse.NOT_SERVING not in seen:
            assert time.monotonic() < deadline, seen
            time.sleep(0.02)
        assert server.process.poll() is None  # draining, waiting for the stream
        server.signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 1  # forced, long before the 600 s grace
        assert not os.path.exists(socket_path)
    finally:
        stream.cancel()
        channel.close()
        reader.join(5)


def test_sigterm_answers_checks_queued_on_the_connection(start_server, socket_path) -> None:  # type: ignore[no-untyped-def]
    """Checks Envoy already sent but grpc had not yet handed to a handler are answered too.

    grpc.aio's stop(grace) alone cancels them (measured: 19-23 of 40 CANCELLED); the drain
    keeps serving until no check has started for a moment.
    """
    from concurrent.futures import ThreadPoolExecutor

    from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

    server = start_server(unix_socket_path=socket_path)
    channel = grpc.insecure_channel(f"unix:{socket_path}")
    call = channel.unary_unary(
        "/envoy.service.auth.v3.Authorization/Check",
        request_serializer=lambda b: b,
        response_deserializer=CheckResponse.FromString,
    )
    padding = {"x-padding": "p" * 60_000}  # big enough that the burst queues up
    burst = [
        check_request("GET", f"/api/v1/licenses/L-{i}", headers=padding).SerializeToString()
        for i in range(40)
    ]
    try:
        call(burst[0], timeout=10)  # connected and warm
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=40) as pool:
            futures = [pool.submit(call, data, timeout=30) for data in burst]
            futures[0].result(timeout=30)
            server.signal(signal.SIGTERM)
            for f in futures:
                try:
                    f.result(timeout=30)
                except grpc.RpcError as exc:
                    errors.append(exc.code().name)
        assert server.process.wait(timeout=20) == 0
    finally:
        channel.close()
    assert not errors, f"{len(errors)} of 40 in-flight checks failed: {sorted(set(errors))}"


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "extauthz", "serve", "--policy", "policies/demo.yaml", *args]
    env = {**os.environ, "HOT_RELOAD": "false"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_unusable_addresses_exit_2_with_one_line(short_tmp, free_port) -> None:  # type: ignore[no-untyped-def]
    import socket as sockets

    blocker = short_tmp / "file"
    blocker.write_text("x")
    result = _serve("--unix-socket", str(blocker / "pdp.sock"), "--http-port", "0")
    assert result.returncode == 2 and "UNIX_SOCKET: cannot prepare" in result.stderr
    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--grpc-port", str(port), "--grpc-host", "127.0.0.1", "--http-port", "0")
        assert (
            result.returncode == 2 and f"GRPC_PORT: cannot bind 127.0.0.1:{port}" in result.stderr
        )
        sock = short_tmp / "s.sock"
        result = _serve("--unix-socket", str(sock), "--http-port", str(port))
        assert result.returncode == 2 and "HTTP_PORT: cannot listen" in result.stderr
        assert not sock.exists()  # what was already bound is cleaned up
    assert "Traceback" not in result.stderr
