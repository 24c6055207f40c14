"""The HTTP transport's own behaviour against the real server: targets, stale connections."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from extauthz import InvalidConfig
from extauthz.client import AsyncContractShieldClient, ContractShieldClient, HttpTransport
from extauthz.client._http_transport import parse_http_target


@pytest.mark.parametrize(
    ("target", "socket_path", "host", "port"),
    [
        ("http://10.0.0.7:3100", None, "10.0.0.7", 3100),
        ("http://pdp.svc", None, "pdp.svc", 80),
        ("http+unix:///run/cs/http.sock", "/run/cs/http.sock", "localhost", 80),
        ("unix:///run/cs/http.sock", "/run/cs/http.sock", "localhost", 80),
    ],
)
def test_targets(target: str, socket_path: str | None, host: str, port: int) -> None:
    t = parse_http_target(target)
    assert (t.socket_path, t.host, t.port) == (socket_path, host, port)


@pytest.mark.parametrize(
    "target", ["https://x:1", "http://x:1/v1/check", "http+unix://rel.sock", "x:1"]
)
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_http_target(target)


def test_transport_kind_follows_the_target_or_the_option(pdp: Any) -> None:
    with ContractShieldClient(f"unix://{pdp.http_socket}", transport="http") as client:
        assert isinstance(client._transport, HttpTransport)
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
    with pytest.raises(InvalidConfig):
        ContractShieldClient("http://127.0.0.1:1", transport="grpc")
    with pytest.raises(InvalidConfig):
        ContractShieldClient("unix:///x.sock", transport="carrier-pigeon")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["http-unix", "http-tcp"])
def test_a_killed_servers_pooled_connection_is_replaced_without_a_retry(
    own_pdp: Any, kind: str
) -> None:
    """The pooled keep-alive connection dies with the server (SIGKILL: a reset, no goodbye);
    the next call finds it dead before any answer and reconnects at once."""
    own_pdp.start()
    with ContractShieldClient(own_pdp.target(kind), cache_enabled=False, retries=0) as client:
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        assert own_pdp.process is not None and own_pdp.process.process is not None
        os.kill(own_pdp.process.process.pid, signal.SIGKILL)
        own_pdp.process.process.wait(10)
        own_pdp.start()
        assert client.evaluate("GET", "/healthz").action == "ALLOW"
        s = client.stats()
        assert (s.errors, s.retries) == (0, 0)


async def test_async_client_over_http_restart(own_pdp: Any) -> None:
    own_pdp.start()
    target = own_pdp.target("http-unix")
    async with AsyncContractShieldClient(target, cache_enabled=False, retries=0) as client:
        assert (await client.evaluate("GET", "/healthz")).action == "ALLOW"
        own_pdp.stop()
        own_pdp.start()
        assert (await client.evaluate("GET", "/admin/users")).action == "BLOCK"
        assert client.stats().errors == 0
