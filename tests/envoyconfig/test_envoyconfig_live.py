"""Generated configs driving a real Envoy in front of a real PDP (not just ``--mode validate``)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from extauthz.demo.tokens import mint_jwt
from extauthz.demo.tour import Probe, send
from extauthz.devstack import free_port
from extauthz.devstack.envoy import EnvoyProcess
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread
from extauthz.envoyconfig import EnvoyConfigOptions, to_dict

pytest.importorskip("envoy_data_plane", reason="envoy-data-plane (extra 'config') not installed")

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "demo.yaml"
BODY = b'{"licenseKey":"ACME-0001-2345-6789","deviceId":"device-42","tenantId":"acme"}'


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cs-gen-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def upstream() -> Iterator[UpstreamThread]:
    with UpstreamThread() as up:
        yield up


def _activate(token: str | None) -> Probe:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return Probe("POST", "/api/v1/licenses/activate", headers, BODY)


def _options(upstream: UpstreamThread, **kwargs: object) -> EnvoyConfigOptions:
    host, port = upstream.address
    return EnvoyConfigOptions(
        upstream=f"{host}:{port}",
        listen_address="127.0.0.1",
        listen_port=free_port(),
        admin_port=free_port(),
        demo_jwt=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_generated_config_puts_the_pdp_in_front_of_the_upstream(
    transport: str, upstream: UpstreamThread, short_dir: Path
) -> None:
    socket = short_dir / "pdp.sock"
    grpc_port = free_port() if transport == "tcp" else 0
    server = ServerProcess(
        policy=POLICY,
        unix_socket_path=socket if transport == "unix" else None,
        grpc_port=grpc_port,
        workdir=short_dir / "pdp",
    )
    if transport == "unix":
        opts = _options(upstream, socket=str(socket))
    else:
        opts = _options(upstream, address=f"127.0.0.1:{grpc_port}")
    with server, EnvoyProcess(to_dict(opts), workdir=short_dir / "envoy") as envoy:
        ok = send(envoy.url, _activate(mint_jwt("alice", "acme")))
        assert (ok.status, ok.decision) == (200, "ALLOW")
        anonymous = send(envoy.url, _activate(None))
        assert anonymous.status == 403 and "auth.required" in anonymous.rule_hits
        forged = send(envoy.url, _activate(mint_jwt(secret=b"not-the-demo-key")))
        assert forged.status == 401  # jwt_authn rejects a bad signature before the PDP


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("failure_mode_allow", "status"), [(False, 503), (True, 200)])
def test_failure_mode_and_status_on_error_when_the_pdp_is_down(
    failure_mode_allow: bool, status: int, upstream: UpstreamThread, short_dir: Path
) -> None:
    opts = _options(
        upstream,
        socket=str(short_dir / "nobody-listens.sock"),
        failure_mode_allow=failure_mode_allow,
    )
    with EnvoyProcess(to_dict(opts), workdir=short_dir / "envoy") as envoy:
        assert send(envoy.url, _activate(mint_jwt())).status == status


@pytest.mark.timeout(60)
def test_body_above_max_body_bytes_reaches_the_pdp_as_partial(
    upstream: UpstreamThread, short_dir: Path
) -> None:
    """With a 64-byte buffer the JSON arrives truncated: the PDP must not ALLOW it."""
    socket = short_dir / "pdp.sock"
    opts = _options(upstream, socket=str(socket), max_body_bytes=64)
    server = ServerProcess(policy=POLICY, unix_socket_path=socket, workdir=short_dir / "pdp")
    with server, EnvoyProcess(to_dict(opts), workdir=short_dir / "envoy") as envoy:
        reply = send(envoy.url, _activate(mint_jwt()))
        assert reply.status in (400, 403, 413), reply
        assert reply.decision == "BLOCK"


ADDRESS_POLICY = """\
policyVersion: "0.1"
name: client-address
defaults: {mode: enforce, unmatchedRouteAction: block}
routes:
  - id: from-client                  # passes only when client.ip is the proxy's client
    match: {method: GET, path: /from-client}
    rules:
      - {id: client.is-client, type: cel, config: {expr: 'client.ip == "10.9.9.9"'}}
  - id: from-peer                    # passes only when client.ip is the TCP peer
    match: {method: GET, path: /from-peer}
    rules:
      - {id: client.is-peer, type: cel, config: {expr: 'client.ip == "127.0.0.1"'}}
"""


def _raw_get(port: int, path: str, *, proxy_line: bytes = b"", xff: str | None = None) -> int:
    """The status of one GET sent byte by byte (a PROXY protocol v1 line first, if given);
    0 when Envoy closes (or resets) the connection without an answer."""
    head = f"GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n"
    if xff is not None:
        head += f"x-forwarded-for: {xff}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(proxy_line + head.encode() + b"\r\n")
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass  # refused: Envoy closed with unread bytes
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


PROXY_LINE = b"PROXY TCP4 10.9.9.9 127.0.0.1 40000 8080\r\n"


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "proxy_protocol", "hops"),
    [("grpc", True, 0), ("http", True, 0), ("http", False, 1)],
    ids=["grpc-proxy-protocol", "http-proxy-protocol", "http-xff-1-hop"],
)
def test_behind_a_proxy_client_ip_is_the_client_the_proxy_names(
    mode: str, proxy_protocol: bool, hops: int, upstream: UpstreamThread, short_dir: Path
) -> None:
    """``--proxy-protocol`` / ``--xff-trusted-hops``: a rule sees the client the trusted proxy
    names, and still never an address a client wrote."""
    policy = short_dir / "address.yaml"
    policy.write_text(ADDRESS_POLICY)
    socket_path = short_dir / "pdp.sock"
    http_mode = mode == "http"
    server = ServerProcess(
        policy=policy,
        unix_socket_path=None if http_mode else socket_path,
        http_unix_socket_path=socket_path if http_mode else None,
        workdir=short_dir / "pdp",
    )
    opts = _options(
        upstream,
        socket=str(socket_path),
        authz_mode=mode,
        proxy_protocol=proxy_protocol,
        xff_trusted_hops=hops,
    )
    with server, EnvoyProcess(to_dict(opts), workdir=short_dir / "envoy") as envoy:
        port = envoy.listen_port
        if proxy_protocol:
            assert _raw_get(port, "/from-client", proxy_line=PROXY_LINE) == 200
            assert _raw_get(port, "/from-peer", proxy_line=PROXY_LINE) == 403
            # The client's own x-forwarded-for changes nothing: no hop is trusted.
            spoof = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n"
            assert _raw_get(port, "/from-peer", proxy_line=spoof, xff="10.9.9.9") == 200
            assert _raw_get(port, "/from-client", proxy_line=spoof, xff="10.9.9.9") == 403
            # Without the PROXY line Envoy closes the connection: nobody passes as the LB.
            assert _raw_get(port, "/from-peer") == 0
        else:
            # The trusted hop (this test, at 127.0.0.1) appended the client's address last;
            # what a client wrote before it is not trusted.
            assert _raw_get(port, "/from-client", xff="6.6.6.6, 10.9.9.9") == 200
            assert _raw_get(port, "/from-client", xff="10.9.9.9, 6.6.6.6") == 403
            assert _raw_get(port, "/from-peer") == 200  # no XFF: the peer itself
