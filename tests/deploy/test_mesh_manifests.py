"""deploy/istio, deploy/envoy-gateway, deploy/gateway-api: every object valid against the real
CRD schema of the release we target (vendored under tests/deploy/schemas, README there), core
objects against Kubernetes' own (kubernetes-validate), and the settings across files agree
with each other and with what the PDP reads."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from extauthz.devstack.server import DEMO_POLICY
from extauthz.envoy.request import parse_claim_headers
from extauthz.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).with_name("schemas")
MESH_DIRS = ("istio", "envoy-gateway", "gateway-api")
ISTIO = "istio-1.30.3"
EG = "envoy-gateway-v1.9.0"
GWAPI = "gateway-api-v1.6.1-experimental"
SCHEMA_FOR = {
    ("security.istio.io/v1", "AuthorizationPolicy"): f"{ISTIO}/security.istio.io_v1_AuthorizationPolicy",
    ("security.istio.io/v1", "RequestAuthentication"): f"{ISTIO}/security.istio.io_v1_RequestAuthentication",
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): f"{ISTIO}/networking.istio.io_v1alpha3_EnvoyFilter",
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"): f"{EG}/gateway.envoyproxy.io_v1alpha1_SecurityPolicy",
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"): f"{EG}/gateway.envoyproxy.io_v1alpha1_EnvoyProxy",
    ("gateway.envoyproxy.io/v1alpha1", "ClientTrafficPolicy"): f"{EG}/gateway.envoyproxy.io_v1alpha1_ClientTrafficPolicy",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): f"{GWAPI}/gateway.networking.k8s.io_v1_HTTPRoute",
    ("gateway.networking.k8s.io/v1", "Gateway"): f"{GWAPI}/gateway.networking.k8s.io_v1_Gateway",
    ("gateway.networking.k8s.io/v1", "GatewayClass"): f"{GWAPI}/gateway.networking.k8s.io_v1_GatewayClass",
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): f"{GWAPI}/gateway.networking.k8s.io_v1beta1_ReferenceGrant",
}  # fmt: skip
CORE_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2")
# The mapping the mesh manifests copy claims with; the PDP gets it as JWT_CLAIM_HEADERS.
BODY_LIMIT = 1_048_576  # envoyconfig's default max_body_bytes, the demo policy's bodies below
CLAIM_HEADERS = "sub=x-jwt-sub,tenant=x-jwt-tenant,scope=x-jwt-scope"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as ``kubectl apply --validate=strict`` does:
    ``additionalProperties: false`` on every object that lists its properties and does not
    keep unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads((SCHEMAS / f"{name}.json").read_text()))
    # The API server takes these on every object; some CRDs (Istio's) leave them unlisted.
    for field, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
        schema["properties"].setdefault(field, {"type": kind})
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(
    p.relative_to(ROOT / "deploy").as_posix()
    for d in MESH_DIRS
    for p in (ROOT / "deploy" / d).glob("*.yaml")
    if p.name != "kustomization.yaml"
)


def all_docs() -> list[dict[str, Any]]:
    return [doc for m in MANIFESTS for doc in documents(ROOT / "deploy" / m)]


def by_kind(kind: str, name: str, directory: str) -> dict[str, Any]:
    for m in MANIFESTS:
        if m.startswith(directory + "/"):
            for doc in documents(ROOT / "deploy" / m):
                if doc["kind"] == kind and doc.get("metadata", {}).get("name") == name:
                    return doc
    raise KeyError((kind, name, directory))


def validate(doc: dict[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key == ("install.istio.io/v1alpha1", "IstioOperator"):
        assert set(doc) == {"apiVersion", "kind", "spec"} and set(doc["spec"]) == {"meshConfig"}
        for provider in doc["spec"]["meshConfig"]["extensionProviders"]:
            validator(f"{ISTIO}/meshconfig_ExtensionProvider_extauthz").validate(provider)
    elif key in SCHEMA_FOR:
        validator(SCHEMA_FOR[key]).validate(doc)
    else:
        assert doc["apiVersion"] in CORE_GROUPS, f"no schema for {key}"
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_every_object_is_valid_against_its_schema(manifest: str) -> None:
    docs = documents(ROOT / "deploy" / manifest)
    assert docs
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize(
    ("kind", "name", "directory", "break_it", "message"),
    [
        ("SecurityPolicy", "stripe-webhook-contractshield", "envoy-gateway",
         lambda d: d["spec"]["extAuth"].update(failopen=True), "failopen"),
        ("SecurityPolicy", "stripe-webhook-contractshield", "envoy-gateway",
         lambda d: d["spec"]["extAuth"].update(statusOnError=299), "299"),
        ("SecurityPolicy", "stripe-webhook-contractshield", "envoy-gateway",
         lambda d: d["spec"]["extAuth"]["bodyToExtAuth"].update(maxRequestBytes=0), "0"),
        ("EnvoyProxy", "contractshield", "envoy-gateway",
         lambda d: d["spec"]["filterOrder"][0].update(name="envoy.filters.http.jwt"), "jwt"),
        ("AuthorizationPolicy", "licenses-api-contractshield", "istio",
         lambda d: d["spec"].update(action="EXTERNAL"), "EXTERNAL"),
        ("RequestAuthentication", "licenses-api-jwt", "istio",
         lambda d: d["spec"]["jwtRules"][0]["outputClaimToHeaders"][0].update(name="x"), "name"),
        ("HTTPRoute", "licenses-api", "gateway-api",
         lambda d: d["spec"]["rules"][0]["filters"][0]["externalAuth"].update(protocol="GRPCS"),
         "GRPCS"),
        ("HTTPRoute", "licenses-api", "gateway-api",
         lambda d: d["spec"]["rules"][0]["filters"][0]["externalAuth"]["forwardBody"].update(
             maxsize=1), "maxsize"),
    ],
)  # fmt: skip
def test_the_schemas_refuse_a_broken_object(
    kind: str, name: str, directory: str, break_it: Any, message: str
) -> None:
    broken = copy.deepcopy(by_kind(kind, name, directory))
    validate(broken)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate(broken)


def test_the_istio_provider_schema_refuses_a_typo() -> None:
    doc = documents(ROOT / "deploy" / "istio" / "extension-providers.yaml")[0]
    provider = copy.deepcopy(doc["spec"]["meshConfig"]["extensionProviders"][0])
    provider["envoyExtAuthzGrpc"]["failopen"] = True
    with pytest.raises(jsonschema.ValidationError, match="failopen"):
        validator(f"{ISTIO}/meshconfig_ExtensionProvider_extauthz").validate(provider)


def test_the_external_auth_filter_is_in_the_vendored_http_route() -> None:
    """GEP-1494's filter, experimental channel: the schema we validate against has it."""
    schema = json.loads(
        (SCHEMAS / f"{SCHEMA_FOR[('gateway.networking.k8s.io/v1', 'HTTPRoute')]}.json").read_text()
    )
    rule = schema["properties"]["spec"]["properties"]["rules"]["items"]
    filters = rule["properties"]["filters"]["items"]
    assert "ExternalAuth" in filters["properties"]["type"]["enum"]
    assert {"protocol", "backendRef", "grpc", "http", "forwardBody"} <= set(
        filters["properties"]["externalAuth"]["properties"]
    )


def _pairs(items: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((i["claim"], i["header"]) for i in items)


def test_identity_headers_are_copied_stripped_allowed_and_read_alike() -> None:
    expected = parse_claim_headers(CLAIM_HEADERS)
    headers = [h for _, h in expected]
    # Istio: copied by RequestAuthentication, stripped before jwt_authn, allowed in HTTP mode.
    authn = by_kind("RequestAuthentication", "licenses-api-jwt", "istio")
    assert _pairs(authn["spec"]["jwtRules"][0]["outputClaimToHeaders"]) == expected
    strip = by_kind("EnvoyFilter", "licenses-api-strip-identity-headers", "istio")
    patch = strip["spec"]["configPatches"][0]
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == (
        "envoy.filters.http.jwt_authn"
    )
    mutations = patch["patch"]["value"]["typed_config"]["mutations"]["request_mutations"]
    prefixes = [m["remove_on_match"]["key_matcher"]["prefix"] for m in mutations]
    assert prefixes == ["x-jwt-", "x-contractshield-"]
    assert all(any(h.startswith(p) for p in prefixes) for h in [*headers, "x-jwt-payload"])
    merge = strip["spec"]["configPatches"][1]["patch"]
    assert merge["operation"] == "MERGE"
    assert merge["value"]["typed_config"]["common_http_protocol_options"] == {
        "headers_with_underscores_action": "REJECT_REQUEST"
    }
    (operator,) = documents(ROOT / "deploy" / "istio" / "extension-providers.yaml")
    http = next(p for p in operator["spec"]["meshConfig"]["extensionProviders"]
                if "envoyExtAuthzHttp" in p)["envoyExtAuthzHttp"]  # fmt: skip
    assert set(headers) <= set(http["includeRequestHeadersInCheck"])
    # Envoy Gateway: claimToHeaders, stripped early, jwt_authn ordered before ext_authz.
    for name in ("securitypolicy-grpc.yaml", "securitypolicy-http.yaml"):
        for doc in documents(ROOT / "deploy" / "envoy-gateway" / name):
            for provider in doc.get("spec", {}).get("jwt", {}).get("providers", []):
                assert _pairs(provider["claimToHeaders"]) == expected
    early = by_kind("ClientTrafficPolicy", "licenses-strip-identity-headers", "envoy-gateway")
    removed = early["spec"]["headers"]["earlyRequestHeaders"]["remove"]
    assert removed[: len(headers)] == headers
    assert {"x-jwt-payload", "x-contractshield-subject", "x-contractshield-tenant"} <= set(removed)
    assert early["spec"]["headers"]["withUnderscoresAction"] == "RejectRequest"
    (order,) = by_kind("EnvoyProxy", "contractshield", "envoy-gateway")["spec"]["filterOrder"]
    assert order == {
        "name": "envoy.filters.http.jwt_authn",
        "before": "envoy.filters.http.ext_authz",
    }
    (http_policy,) = documents(ROOT / "deploy" / "envoy-gateway" / "securitypolicy-http.yaml")
    assert set(headers) | {"stripe-signature"} <= set(
        http_policy["spec"]["extAuth"]["headersToExtAuth"]
    )


def test_route_ids_and_body_limits_match_the_policy() -> None:
    policy = load_policy(DEMO_POLICY)
    route_ids = {r.id for r in policy.routes}
    pinned = set()
    for doc in documents(ROOT / "deploy" / "envoy-gateway" / "securitypolicy-grpc.yaml"):
        if doc["kind"] != "SecurityPolicy":
            continue
        ext = doc["spec"]["extAuth"]
        (extension,) = ext["contextExtensions"]
        assert extension["name"] == "route_id"
        pinned.add(extension["value"])
        assert ext["statusOnError"] == 503 and ext["failOpen"] is False
        assert ext["bodyToExtAuth"]["maxRequestBytes"] == BODY_LIMIT
    assert pinned and pinned <= route_ids
    (operator,) = documents(ROOT / "deploy" / "istio" / "extension-providers.yaml")
    for provider in operator["spec"]["meshConfig"]["extensionProviders"]:
        (settings,) = (v for k, v in provider.items() if k != "name")
        assert settings["includeRequestBodyInCheck"] == {
            "maxRequestBytes": BODY_LIMIT + 1,  # partial bodies: one over the limit is seen
            "allowPartialMessage": True,
            "packAsBytes": True,
        }
        assert settings["statusOnError"] == "503" and settings["failOpen"] is False
