"""The HTTP transport's own behaviour against the real server: targets, stale connections."""

from __future__ import annotations

import os
import signal
import ssl
from typing import Any

import pytest

from extauthz import InvalidConfig
from extauthz.client import (
    AsyncContractShieldClient,
    AsyncHttpTransport,
    ContractShieldClient,
    HttpTransport,
    TlsOptions,
)
from extauthz.client._http_transport import parse_http_target


@pytest.mark.parametrize(
    ("target", "socket_path", "host", "port", "https"),
    [
        ("http://10.0.0.7:3100", None, "10.0.0.7", 3100, False),
        ("http://pdp.svc", None, "pdp.svc", 80, False),
        ("https://10.0.0.7:3100", None, "10.0.0.7", 3100, True),
        ("https://pdp.svc", None, "pdp.svc", 443, True),
        ("http+unix:///run/cs/http.sock", "/run/cs/http.sock", "localhost", 80, False),
        ("unix:///run/cs/http.sock", "/run/cs/http.sock", "localhost", 80, False),
    ],
)
def test_targets(target: str, socket_path: str | None, host: str, port: int, https: bool) -> None:
    t = parse_http_target(target)
    assert (t.socket_path, t.host, t.port, t.https) == (socket_path, host, port, https)


@pytest.mark.parametrize(
    "target",
    [
        "ftp://x:1",
        "https://x:1/v1/check",
        "https://:1",
        "https://x:port",
        "http+unix://rel.sock",
        "x:1",
    ],
)
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_http_target(target)


@pytest.mark.parametrize("transport", [HttpTransport, AsyncHttpTransport])
def test_an_https_transport_verifies_the_pdp(transport: Any) -> None:
    """Built once at construction: TLS 1.2+, the certificate and its name checked; the name
    is the target's host unless server_name replaces it (SNI and check alike)."""
    plain = transport("https://10.0.0.7:3100")._tls
    named = transport("https://10.0.0.7:3100", tls=TlsOptions(server_name="pdp.test"))._tls
    assert (plain.server_hostname, named.server_hostname) == ("10.0.0.7", "pdp.test")
    for context in (plain.context, named.context):
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    # no ca_file: the system roots, the ones the standard library's default context trusts
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert plain.context.cert_store_stats()["x509_ca"] == system
    assert transport("http://10.0.0.7:3100")._tls is None


@pytest.mark.parametrize("client", [ContractShieldClient, AsyncContractShieldClient])
@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        ("http://127.0.0.1:1", {}, "tls needs an https:// target; an http:// URL is plaintext"),
        ("http+unix:///tmp/x.sock", {}, "tls needs an https:// target; a Unix socket is plain"),
        ("unix:///tmp/x.sock", {"transport": "http"}, "a Unix socket is plaintext"),
        ("unix:///tmp/x.sock", {}, "TLS is for a TCP target"),  # gRPC's own refusal
    ],
)
def test_tls_is_refused_for_a_plaintext_target(
    client: Any, target: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfig, match=message):
        client(target, tls=TlsOptions(), **options)


def test_tls_is_refused_beside_a_transport_object() -> None:
    with pytest.raises(InvalidConfig, match="a transport object brings its own TLS"):
        ContractShieldClient(transport=HttpTransport("http://127.0.0.1:1"), tls=TlsOptions())
    with pytest.raises(InvalidConfig, match="use transport='http'"):
        ContractShieldClient("https://127.0.0.1:1", transport="grpc")


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
