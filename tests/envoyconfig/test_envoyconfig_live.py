"""Generated configs driving a real Envoy in front of a real PDP (not just ``--mode validate``)."""

from __future__ import annotations

import shutil
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
