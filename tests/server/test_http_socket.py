"""The HTTP API on a Unix socket (HTTP_UNIX_SOCKET): the gRPC socket's hygiene, the same API,
and Envoy's HTTP-mode ext_authz answered on it (status, headers, body: docs/envoy.md)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from _server_support import stripe_event, stripe_headers

from extauthz import SocketInUse


@pytest.fixture
def http_socket(short_tmp: Any) -> str:
    return str(short_tmp / "http.sock")


async def start_http(start_inproc: Any, http_socket: str, **config: Any) -> Any:
    return await start_inproc(unix_socket=None, http_unix_socket=http_socket, **config)


def session(path: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession("http://pdp", connector=aiohttp.UnixConnector(path=path))


async def test_serves_the_api_with_mode_0660_and_removes_the_socket(
    start_inproc, http_socket
) -> None:  # type: ignore[no-untyped-def]
    server = await start_http(start_inproc, http_socket)
    st = os.stat(http_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    async with session(http_socket) as http:
        async with http.get("/live") as resp:
            assert resp.status == 200
        ctx = {"request": {"method": "GET", "path": "/admin/users"}}
        async with http.post("/v1/evaluate", json=ctx) as resp:
            assert (await resp.json())["action"] == "BLOCK"
        async with http.get("/metrics") as resp:
            assert "contractshield" in await resp.text()
    await server.stop(0)
    assert not os.path.exists(http_socket)


async def test_socket_mode_is_configurable(start_inproc, http_socket) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket, socket_mode=0o600)
    assert stat.S_IMODE(os.stat(http_socket).st_mode) == 0o600


async def test_stale_socket_is_replaced(start_inproc, http_socket) -> None:  # type: ignore[no-untyped-def]
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(http_socket)
    stale.close()  # what a crashed server leaves behind
    await start_http(start_inproc, http_socket)
    async with session(http_socket) as http, http.get("/live") as resp:
        assert resp.status == 200


async def test_live_socket_is_never_stolen(start_inproc, http_socket) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket)
    with pytest.raises(SocketInUse, match="another server"):
        await start_http(start_inproc, http_socket)
    async with session(http_socket) as http, http.get("/live") as resp:
        assert resp.status == 200  # the first one still serves


async def test_not_a_socket_is_never_removed(start_inproc, http_socket) -> None:  # type: ignore[no-untyped-def]
    with open(http_socket, "w") as f:
        f.write("precious")
    with pytest.raises(Exception, match=r"HTTP_UNIX_SOCKET.*not a socket"):
        await start_http(start_inproc, http_socket)
    with open(http_socket) as f:
        assert f.read() == "precious"


def test_process_removes_both_sockets_on_sigterm(start_server, socket_path, http_socket) -> None:  # type: ignore[no-untyped-def]
    server = start_server(unix_socket_path=socket_path, http_unix_socket_path=http_socket)
    assert os.path.exists(socket_path) and os.path.exists(http_socket)
    server.signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    assert not os.path.exists(socket_path) and not os.path.exists(http_socket)


def test_a_second_process_refuses_a_live_http_socket(start_server, http_socket) -> None:  # type: ignore[no-untyped-def]
    first = start_server(http_unix_socket_path=http_socket)
    argv = [sys.executable, "-m", "extauthz", "serve", "--policy", str(first.policy)]
    argv += ["--http-unix-socket", http_socket, "--http-port", "0"]
    second = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**os.environ, "HOT_RELOAD": "false"}
    )
    assert second.returncode == 1 and "another server is answering" in second.stderr
    assert first.process.poll() is None


# --- Envoy's HTTP-mode ext_authz on the socket -------------------------------------------------


def payload(**claims: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


GOOD = {
    "licenseKey": "ABCD-1234-EFGH-5678",
    "deviceId": "dev-1",
    "tenantId": "acme",
    "callbackUrl": "https://ok.example/cb",
}


async def test_http_mode_allow_sets_trusted_headers_and_removes_the_rest(
    start_inproc, http_socket
) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket)
    async with session(http_socket) as http:
        headers = {
            "content-type": "application/json",
            "x-jwt-payload": payload(sub="alice", tenant="acme", scope="licenses:write"),
            "x-request-id": "rid-1",
        }
        async with http.post(
            "/ext_authz/api/v1/licenses/activate", data=json.dumps(GOOD), headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            h = resp.headers
            assert h["x-contractshield-decision"] == "ALLOW"
            assert (
                h["x-contractshield-subject"] == "alice" and h["x-contractshield-tenant"] == "acme"
            )
            assert h["x-contractshield-route"] == "license-activate"
            assert h["x-contractshield-decision-id"] == "rid-1"
            assert "x-envoy-auth-headers-to-remove" not in h
        async with http.get("/ext_authz/healthz") as resp:  # anonymous
            assert resp.status == 200
            assert set(resp.headers["x-envoy-auth-headers-to-remove"].split(",")) == {
                "x-contractshield-subject",
                "x-contractshield-tenant",
            }


async def test_http_mode_block_is_the_decisions_status_with_a_json_body(
    start_inproc, http_socket
) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket)
    async with session(http_socket) as http:
        async with http.get("/ext_authz/admin/users", headers={"x-request-id": "r-2"}) as resp:
            assert resp.status == 403
            assert resp.headers["content-type"] == "application/json"
            body = await resp.json()
        assert body["code"] == "POLICY_VIOLATION" and "admin.denied" in body["ruleHits"]
        assert body["requestId"] == "r-2" and resp.headers["x-contractshield-decision-id"] == "r-2"
        async with http.post(
            "/ext_authz/api/v1/licenses/activate",
            data=b"{}",
            headers={"content-type": "application/json", "x-jwt-payload": "%%not-base64%%"},
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == "INVALID_REQUEST"


async def test_http_mode_partial_body_is_judged_by_its_declared_size(
    start_inproc, http_socket
) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket)
    headers = {
        "content-type": "application/json",
        "x-envoy-auth-partial-body": "true",
        "x-contractshield-content-length": str(2 * 1024 * 1024),
        "x-jwt-payload": payload(sub="alice", tenant="acme", scope="licenses:write"),
    }
    async with (
        session(http_socket) as http,
        http.post(
            "/ext_authz/api/v1/licenses/activate", data=b'{"licenseKey": "AB', headers=headers
        ) as resp,
    ):
        assert resp.status == 413
        assert "limit.body.max" in (await resp.json())["ruleHits"]


async def test_http_mode_webhook_raw_bytes_and_replay(start_inproc, http_socket) -> None:  # type: ignore[no-untyped-def]
    await start_http(start_inproc, http_socket)
    event = stripe_event("evt_http_mode_1") + b"\n"
    async with session(http_socket) as http:
        statuses = []
        for _ in range(2):
            async with http.post(
                "/ext_authz/webhooks/stripe", data=event, headers=stripe_headers(event)
            ) as resp:
                statuses.append((resp.status, await resp.read()))
    assert statuses[0][0] == 200, statuses[0]
    assert statuses[1][0] != 200 and b"webhook.stripe.replay" in statuses[1][1]
