"""The ext_authz configuration Istio and Envoy Gateway generate, run in a real Envoy in front of
a real ``extauthz serve`` (docs/mesh.md, "What the mesh generates", names the source read).

Each case rebuilds, as an Envoy bootstrap, what the product writes for our manifests in
deploy/: the filter order, jwt_authn with ``claim_to_headers`` (neither product forwards
jwt_authn's metadata to ext_authz), the client's copies of those headers removed first, the
ext_authz settings (body buffering, allowed headers in HTTP mode, status on error, per-route
context extensions where the product has them). The PDP runs with ``JWT_CLAIM_HEADERS``.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from extauthz.demo.tokens import mint_jwt, stripe_signature
from extauthz.devstack import free_port
from extauthz.devstack.envoy import (
    HTTP_MODE_CONFIG,
    SIDECAR_CONFIG,
    EnvoyProcess,
    render_config,
)
from extauthz.devstack.server import ServerProcess
from extauthz.devstack.upstream import UpstreamThread
from extauthz.envoyconfig import DEMO_JWT_ISSUER, demo_jwks

CLAIM_HEADERS = "sub=x-jwt-sub,tenant=x-jwt-tenant,scope=x-jwt-scope"
IDENTITY_HEADERS = ("x-jwt-sub", "x-jwt-tenant", "x-jwt-scope")
BODY_LIMIT = 4096  # small, so the tests can cross it
UNKNOWN_PATH = "/v2/activate"  # not in the demo policy: only a pinned route id can match it
T = "type.googleapis.com/envoy.extensions.filters"


@dataclass(frozen=True)
class Mesh:
    """What one product generates for ext_authz (see the module docstring)."""

    name: str
    mode: str  # grpc | http
    context_extensions: bool  # per-route check_settings (Envoy Gateway's contextExtensions)
    partial_body: bool  # allow_partial_message + pack_as_bytes (Istio) or neither (Envoy Gateway)
    allowed_headers: tuple[str, ...] | None  # HTTP mode's list (None: Envoy's default five)
    payload_in_metadata: str  # where jwt_authn puts the payload (not forwarded to ext_authz)


HTTP_ALLOWED = ("content-type", "user-agent", "x-request-id", *IDENTITY_HEADERS, "stripe-signature")
MESHES = [
    Mesh("istio", "grpc", False, True, None, "payload"),
    Mesh("istio", "http", False, True, HTTP_ALLOWED, "payload"),
    Mesh("envoy-gateway", "grpc", True, False, None, "issuer"),
    Mesh("envoy-gateway", "http", True, False, HTTP_ALLOWED, "issuer"),
]


def _jwt_authn(mesh: Mesh) -> dict[str, Any]:
    provider = {
        "issuer": DEMO_JWT_ISSUER,
        "local_jwks": {"inline_string": demo_jwks()},
        "forward": mesh.name == "envoy-gateway",  # Envoy Gateway forwards, Istio strips
        "payload_in_metadata": mesh.payload_in_metadata,
        "claim_to_headers": [
            {"header_name": h, "claim_name": c}
            for c, h in (p.split("=") for p in CLAIM_HEADERS.split(","))
        ],
    }
    requirement = {
        "requires_any": {"requirements": [{"provider_name": "p"}, {"allow_missing": {}}]}
    }
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": f"{T}.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"p": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": requirement}],
        },
    }


def _strip() -> dict[str, Any]:
    """Istio: a header_mutation filter before jwt_authn (deploy/istio's EnvoyFilter)."""
    return {
        "name": "contractshield.strip-identity-headers",
        "typed_config": {
            "@type": f"{T}.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": h} for h in IDENTITY_HEADERS]},
        },
    }


def _ext_authz(mesh: Mesh, base: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": f"{T}.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "failure_mode_allow": False,
        "status_on_error": {"code": 503},
        "with_request_body": {"max_request_bytes": BODY_LIMIT},
    }
    if mesh.partial_body:
        config["with_request_body"].update(allow_partial_message=True, pack_as_bytes=True)
    if mesh.mode == "grpc":
        config["grpc_service"] = base["grpc_service"]
    else:
        service = base["http_service"]
        config["http_service"] = {
            "server_uri": service["server_uri"],
            "path_prefix": "/ext_authz",
            "authorization_response": {
                "allowed_upstream_headers": {
                    "patterns": [
                        {"exact": h, "ignore_case": True}
                        for h in ("x-contractshield-decision", "x-contractshield-subject")
                    ]
                }
            },
        }
        if mesh.allowed_headers is not None:
            config["allowed_headers"] = {
                "patterns": [{"exact": h, "ignore_case": True} for h in mesh.allowed_headers]
            }
    return {"name": "envoy.filters.http.ext_authz", "typed_config": config}


def mesh_config(mesh: Mesh, template: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(template)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    filters = {f["name"]: f for f in hcm["http_filters"]}
    base = filters["envoy.filters.http.ext_authz"]["typed_config"]
    chain = [_jwt_authn(mesh), _ext_authz(mesh, base), filters["envoy.filters.http.router"]]
    if mesh.name == "istio":
        chain.insert(0, _strip())
    else:  # Envoy Gateway: ClientTrafficPolicy earlyRequestHeaders
        hcm["early_header_mutation_extensions"] = [
            {
                "name": "envoy.http.early_header_mutation.header_mutation",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation."
                    "header_mutation.v3.HeaderMutation",
                    "mutations": [{"remove": h} for h in IDENTITY_HEADERS],
                },
            }
        ]
    hcm["http_filters"] = chain
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    routes = []
    if mesh.context_extensions:  # one SecurityPolicy per HTTPRoute, each with its route_id
        for path, route_id in (
            (UNKNOWN_PATH, "license-activate"),
            ("/webhooks/stripe", "stripe-webhook"),
        ):
            routes.append(
                {
                    "match": {"path": path},
                    "route": {"cluster": "upstream"},
                    "typed_per_filter_config": {
                        "envoy.filters.http.ext_authz": {
                            "@type": f"{T}.http.ext_authz.v3.ExtAuthzPerRoute",
                            "check_settings": {"context_extensions": {"route_id": route_id}},
                        }
                    },
                }
            )  # fmt: skip
    vhost["routes"] = routes + vhost["routes"]
    return config


@dataclass
class MeshStack:
    mesh: Mesh
    envoy: EnvoyProcess
    server: ServerProcess
    upstream: UpstreamThread

    def send(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, Any], str]:
        """(status, the upstream's echo or the denial JSON, content-type)."""
        req = urllib.request.Request(
            self.envoy.url + path,
            data=body,
            method=method,
            headers={k.replace("_", "-"): v for k, v in headers.items()},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers["content-type"] or ""
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers["content-type"] or ""
        data = json.loads(raw) if "json" in ctype and raw else {}
        return status, data, ctype


@pytest.fixture(scope="module", params=MESHES, ids=[f"{m.name}-{m.mode}" for m in MESHES])
def stack(request: pytest.FixtureRequest) -> Iterator[MeshStack]:
    mesh: Mesh = request.param
    workdir = Path(tempfile.mkdtemp(prefix="cs-mesh-", dir="/tmp"))
    sock = str(workdir / "pdp.sock")
    upstream = UpstreamThread().start()
    server = ServerProcess(
        unix_socket_path=sock if mesh.mode == "grpc" else None,
        http_unix_socket_path=sock if mesh.mode == "http" else None,
        http_port=free_port(),
        env={"JWT_CLAIM_HEADERS": CLAIM_HEADERS},
        workdir=workdir / "server",
    )
    envoy = None
    try:
        server.start()
        template = render_config(
            SIDECAR_CONFIG if mesh.mode == "grpc" else HTTP_MODE_CONFIG,
            listen_port=free_port(),
            admin_port=free_port(),
            pdp_socket=sock,
            upstream=upstream.address,
            health_interval="1s",
        )
        envoy = EnvoyProcess(mesh_config(mesh, template), workdir=workdir / "envoy").start()
        yield MeshStack(mesh, envoy, server, upstream)
    finally:
        if envoy is not None:
            envoy.stop()
        server.kill()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


ACTIVATE = {"licenseKey": "ACME-0001-2345-6789", "deviceId": "device-42", "tenantId": "acme"}


def bearer(**claims: Any) -> str:
    return f"Bearer {mint_jwt(**claims)}"


def test_the_verified_identity_reaches_the_pdp_through_claim_headers(stack: MeshStack) -> None:
    body = json.dumps(ACTIVATE).encode()
    status, echo, _ = stack.send(
        "POST", "/api/v1/licenses/activate", body,
        content_type="application/json", authorization=bearer(subject="alice", tenant="acme"),
    )  # fmt: skip
    assert status == 200, echo
    assert echo["headers"]["x-contractshield-subject"] == "alice"
    # tenant.binding compares the body's tenantId with the token's tenant claim:
    status, denial, _ = stack.send(
        "POST", "/api/v1/licenses/activate", body,
        content_type="application/json", authorization=bearer(subject="bob", tenant="globex"),
    )  # fmt: skip
    assert status == 403 and "tenant.binding" in denial["ruleHits"], denial


def test_a_client_cannot_name_itself_with_the_claim_headers(stack: MeshStack) -> None:
    forged = {"x_jwt_sub": "alice", "x_jwt_tenant": "acme", "x_jwt_scope": "licenses:write"}
    body = json.dumps(ACTIVATE).encode()
    status, denial, _ = stack.send(
        "POST", "/api/v1/licenses/activate", body, content_type="application/json", **forged
    )
    assert status in (401, 403) and "auth.required" in denial["ruleHits"], denial
    # With a token that lacks the tenant claim, a forged tenant header must not fill the gap.
    status, denial, _ = stack.send(
        "POST", "/api/v1/licenses/activate", body, content_type="application/json",
        authorization=bearer(subject="mallory", tenant=""), x_jwt_tenant="acme",
    )  # fmt: skip
    assert status == 403 and "tenant.binding" in denial["ruleHits"], denial


def test_webhook_signature_and_body_reach_the_pdp_and_replays_are_blocked(
    stack: MeshStack,
) -> None:
    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid"}).encode()
    headers = {"content_type": "application/json", "stripe_signature": stripe_signature(payload)}
    assert stack.send("POST", "/webhooks/stripe", payload, **headers)[0] == 200
    status, denial, _ = stack.send("POST", "/webhooks/stripe", payload, **headers)
    assert status == 403 and denial["ruleHits"] == ["webhook.stripe.replay"]


def test_route_id_pinned_by_context_extensions(stack: MeshStack) -> None:
    """Envoy Gateway's contextExtensions pin the policy's route per HTTPRoute in gRPC mode;
    HTTP mode carries no context extensions, and Istio has no field for them: the PDP's own
    matching answers, and a path the policy does not know is unmatched."""
    status, reply, _ = stack.send(
        "POST", UNKNOWN_PATH, json.dumps(ACTIVATE).encode(),
        content_type="application/json", authorization=bearer(),
    )  # fmt: skip
    if stack.mesh.context_extensions and stack.mesh.mode == "grpc":
        assert status == 200, reply
        assert reply["headers"]["x-contractshield-route"] == "license-activate"
    else:
        assert status == 403 and reply["ruleHits"] == ["route.unmatched"], reply


def test_bodies_over_the_limit(stack: MeshStack) -> None:
    """Istio (allowPartialMessage): the PDP gets the first bytes, flagged, and decides. Envoy
    Gateway (no partial bodies): Envoy answers 413 itself; the PDP never sees the request."""
    big = json.dumps({**ACTIVATE, "deviceId": "d" * (2 * BODY_LIMIT)}).encode()
    before = stack.upstream.count
    status, reply, ctype = stack.send(
        "POST", "/api/v1/licenses/activate", big,
        content_type="application/json", authorization=bearer(),
    )  # fmt: skip
    assert stack.upstream.count == before
    if stack.mesh.partial_body:
        assert "json" in ctype and reply["ruleHits"], (status, reply)  # the PDP's denial
    else:
        assert status == 413 and "json" not in ctype


def test_http_mode_forwards_only_the_allowed_headers() -> None:
    """Without ``includeRequestHeadersInCheck``/``headersToExtAuth`` Envoy's HTTP mode sends
    the PDP only Host, Method, Path, Content-Length and Authorization: a Stripe webhook's
    signature never arrives and the webhook is refused."""
    mesh = Mesh("istio", "http", False, True, None, "payload")
    workdir = Path(tempfile.mkdtemp(prefix="cs-mesh-", dir="/tmp"))
    sock = str(workdir / "pdp.sock")
    with UpstreamThread() as upstream:
        server = ServerProcess(
            http_unix_socket_path=sock, http_port=free_port(), workdir=workdir / "server"
        )
        try:
            server.start()
            template = render_config(
                HTTP_MODE_CONFIG, listen_port=free_port(), admin_port=free_port(),
                pdp_socket=sock, upstream=upstream.address,
            )  # fmt: skip
            with EnvoyProcess(mesh_config(mesh, template), workdir=workdir / "envoy") as envoy:
                stack = MeshStack(mesh, envoy, server, upstream)
                payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}"}).encode()
                status, denial, _ = stack.send(
                    "POST", "/webhooks/stripe", payload,
                    content_type="application/json", stripe_signature=stripe_signature(payload),
                )  # fmt: skip
                assert status in (400, 401, 403), denial
                assert any("stripe" in hit for hit in denial["ruleHits"]), denial
        finally:
            server.kill()
            shutil.rmtree(workdir, ignore_errors=True)


def test_pdp_down_answers_the_status_on_error(stack: MeshStack) -> None:
    """Last in the module: it stops the PDP. failOpen false, statusOnError 503."""
    stack.server.kill()
    before = stack.upstream.count
    status, _, _ = stack.send("GET", "/healthz")
    assert status == 503 and stack.upstream.count == before
