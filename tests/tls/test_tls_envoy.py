"""mTLS between a real Envoy and the real PDP on TCP, with the generator's UpstreamTlsContext."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _tls_support import Pki

from extauthz.devstack import free_port
from extauthz.devstack.envoy import ENVOY_DIR, EnvoyProcess, render_config
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread
from extauthz.envoyconfig import EnvoyConfigOptions

MTLS_CONFIG = ENVOY_DIR / "envoy-tcp-mtls.yaml"


@dataclass
class MtlsPdp:
    server: ServerProcess
    upstream: UpstreamThread


@pytest.fixture(scope="module")
def pdp(pki: Pki) -> Iterator[MtlsPdp]:
    workdir = Path(tempfile.mkdtemp(prefix="cs-mtls-", dir="/tmp"))
    upstream = UpstreamThread().start()
    server = ServerProcess(
        grpc_port=free_port(),
        http_port=free_port(),
        env={
            "GRPC_HOST": "127.0.0.1",
            "TLS_CERT_FILE": str(pki.server.cert_file),
            "TLS_KEY_FILE": str(pki.server.key_file),
            "TLS_CLIENT_CA_FILE": str(pki.ca.cert_file),
            "HTTP_TLS": "false",  # plain probes on localhost; gRPC is mTLS
        },
        workdir=workdir,
    )
    try:
        server.start()
        yield MtlsPdp(server, upstream)
    finally:
        server.kill()
        upstream.stop()


def _envoy(pdp: MtlsPdp, opts: EnvoyConfigOptions, workdir: Path) -> EnvoyProcess:
    config = render_config(
        opts,
        listen_port=free_port(),
        admin_port=free_port(),
        pdp_address=("127.0.0.1", pdp.server.grpc_port),
        upstream=pdp.upstream.address,
        health_interval="1s",
        timeout="1s",
    )
    return EnvoyProcess(config, workdir=workdir)


def _get(url: str, path: str) -> tuple[int, dict[str, Any] | None]:
    try:
        with urllib.request.urlopen(url + path, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, None


def _options(pki: Pki, *, client_cert: bool = True) -> EnvoyConfigOptions:
    return EnvoyConfigOptions(
        address="127.0.0.1:1",  # replaced by render_config
        demo_jwt=True,
        pdp_tls_ca_file=str(pki.ca.cert_file),
        pdp_tls_cert_file=str(pki.client.cert_file) if client_cert else None,
        pdp_tls_key_file=str(pki.client.key_file) if client_cert else None,
        pdp_tls_server_name="pdp.test",
    )


def test_envoy_with_its_client_certificate_gets_decisions(
    pdp: MtlsPdp, pki: Pki, tmp_path: Path
) -> None:
    with _envoy(pdp, _options(pki), tmp_path / "envoy").start() as envoy:
        status, echo = _get(envoy.url, "/healthz")
        assert status == 200 and echo is not None and echo["path"] == "/healthz"
        assert echo["headers"]["x-contractshield-decision"] == "ALLOW"
        status, denial = _get(envoy.url, "/admin/users")
        assert status == 403 and denial is not None and "admin.denied" in denial["ruleHits"]


@pytest.mark.parametrize("variant", ["no client certificate", "plaintext", "wrong server name"])
def test_envoy_that_cannot_pass_mtls_fails_closed(
    pdp: MtlsPdp, pki: Pki, tmp_path: Path, variant: str
) -> None:
    """The PDP refuses the handshake, so Envoy answers status_on_error (503), never 200."""
    if variant == "no client certificate":
        opts = _options(pki, client_cert=False)
    elif variant == "plaintext":
        opts = EnvoyConfigOptions(address="127.0.0.1:1", demo_jwt=True)
    else:
        opts = _options(pki).with_(pdp_tls_server_name="not-the-pdp.test")
    with _envoy(pdp, opts, tmp_path / "envoy").start() as envoy:
        before = pdp.upstream.count
        status, body = _get(envoy.url, "/healthz")
        assert status == 503, body
        assert pdp.upstream.count == before, "nothing reached the upstream"


def test_shipped_mtls_config_is_what_the_generator_prints() -> None:
    first = MTLS_CONFIG.read_text(encoding="utf-8").splitlines()[0]
    match = re.search(r"`extauthz (envoy-config [^`]*)`", first)
    assert match, first
    proc = subprocess.run(
        [sys.executable, "-m", "extauthz", *shlex.split(match.group(1)), "--header"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MTLS_CONFIG.read_text(encoding="utf-8")
    pdp = next(
        c
        for c in yaml.safe_load(proc.stdout)["static_resources"]["clusters"]
        if c["name"] == "contractshield"
    )
    tls = pdp["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2"]
    assert tls["common_tls_context"]["tls_certificates"][0]["private_key"]["filename"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pdp_tls_cert_file": "c.pem", "pdp_tls_key_file": "k.pem"}, "without pdp_tls_ca_file"),
        ({"pdp_tls_ca_file": "ca.pem", "pdp_tls_cert_file": "c.pem"}, "both pdp_tls_cert_file"),
        ({"pdp_tls_ca_file": "ca.pem", "socket": "/tmp/s.sock", "address": None}, "Unix socket"),
    ],
)
def test_generator_refuses_half_a_tls_setting(changes: dict[str, Any], message: str) -> None:
    from extauthz import InvalidConfig

    base: dict[str, Any] = {"address": "pdp:9001"}
    with pytest.raises(InvalidConfig, match=message):
        EnvoyConfigOptions(**{**base, **changes})
