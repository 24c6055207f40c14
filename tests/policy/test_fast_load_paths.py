"""A policy loaded the fast way decides exactly as one loaded the plain way.

Each speed-up of a load sits behind a seam: libyaml events for YAML (``_loader.FAST_YAML``),
the fast OpenAPI document check (``_openapi_check.FAST_CHECK``), jsonschema-rs before the
metaschema (``metaschema.FAST_METASCHEMA``), shared metaschema checks and validators
(``_compile.SHARE_METASCHEMA_CHECKS``), lean generated code (``contract.LEAN_CODE``). The same
policies (the OpenAPI test documents, generated Stripe- and GitHub-shaped descriptions) are
loaded with every seam off and every seam on; the routes, versions and decisions on requests
generated from each operation's schema (valid ones, and one mutation away) must be equal,
rule hit messages included.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.specgen import _NoAliasDumper, github_like, stripe_like
from extauthz.engine import contract, metaschema
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import _compile, _loader, _openapi_check, load_policy
from tests.engine.conftest import decide_all

DATA = Path(__file__).parent / "data" / "openapi"
SEAMS = [
    (_loader, "FAST_YAML"),
    (_openapi_check, "FAST_CHECK"),
    (metaschema, "FAST_METASCHEMA"),
    (_compile, "SHARE_METASCHEMA_CHECKS"),
    (contract, "LEAN_CODE"),
]


def _load(monkeypatch: pytest.MonkeyPatch, path: Path, fast: bool) -> CompiledPolicy:
    for module, name in SEAMS:
        monkeypatch.setattr(module, name, fast)
    return load_policy(path)


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    for _ in range(20):
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
        else:
            break
    return schema


def _instance(schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """A value the schema (probably) accepts: required properties, first branches."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > 6:
        return "x"
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _instance(schema[key][0], root, depth + 1)
    if schema.get("allOf"):
        out: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _instance(part, root, depth + 1)
            if isinstance(value, dict):
                out.update(value)
        return out
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        names = list(schema.get("required", []))[:6] + list(props)[:2]
        return {n: _instance(props.get(n, {}), root, depth + 1) for n in dict.fromkeys(names)}
    if kind == "array":
        return [_instance(schema.get("items", {}), root, depth + 1)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return "x" * max(1, int(schema.get("minLength", 1)))


def _bodies(schema: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(schema, dict):
        return
    valid = _instance(schema, schema)
    yield "valid", valid
    if isinstance(valid, dict):
        yield "empty", {}
        yield "unknown", {**valid, "zz_unknown": 1}
        for i, key in enumerate(list(valid)[:4]):
            yield f"wrong {key}", {**valid, key: [1] if i % 2 else {"x": 1}}
            yield f"without {key}", {k: v for k, v in valid.items() if k != key}
    yield "scalar", 5


def _requests(policy: CompiledPolicy) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for route in policy.routes:
        path = "/" + "/".join(
            "1" if seg.startswith("{") else seg for seg in route.pattern.text.strip("/").split("/")
        )
        method = route.methods[0]
        c = route.contract
        yield method, path, {}
        yield method, path, {"query": {"zz": "1", "limit": "abc", "expand": "a"}}
        if c is None:
            continue
        if c.parameters is not None:
            for p in c.parameters.params:
                if p.location == "query":
                    for raw in ("1", "abc", "", "a,b"):
                        yield method, path, {"query": {p.name: raw}}
                elif p.location == "path":
                    yield method, path.replace("/1", "/abc", 1), {}


def _schemas_by_route(spec: dict[str, Any]) -> dict[str, Any]:
    """Each operation's JSON body schema as the spec writes it (for generating bodies)."""
    from extauthz.policy._openapi import operations, route_id

    out = {}
    for method, path, op in operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        for media in content.values():
            if "schema" in media:
                schema = dict(media["schema"])
                schema.setdefault("$defs", spec.get("components", {}).get("schemas", {}))
                out[route_id(op, method, path)] = schema
                break
    return out


CASES = {
    "stripe-like": lambda: stripe_like(11, operations=70, schemas=60, object_parameters=False),
    "github-like": lambda: github_like(11, operations=70, schemas=60),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_descriptions_decide_the_same_either_way(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = CASES[name]()
    (tmp_path / "api.yaml").write_text(yaml.dump(spec, Dumper=_NoAliasDumper, sort_keys=False))
    (tmp_path / "p.yaml").write_text(
        'policyVersion: "0.1"\ndefaults: {unmatchedRouteAction: block}\nroutes: []\n'
        "openapi: {spec: ./api.yaml, rejectUnknownFields: true, rejectUnknownParameters: true}\n"
    )
    plain = _load(monkeypatch, tmp_path / "p.yaml", fast=False)
    fast = _load(monkeypatch, tmp_path / "p.yaml", fast=True)
    _same_policies(plain, fast, _schemas_by_route(spec), name)


def test_the_test_documents_decide_the_same_either_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for f in DATA.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "p.yaml").write_text(
        'policyVersion: "0.1"\nroutes:\n'
        "  - id: store-order\n    match: {method: POST, path: /store/orders}\n"
        '    contract: {openapiRef: "./store31.json#/paths/~1orders/post", '
        "rejectUnknownFields: true}\n"
        "openapi: {spec: ./shop30.yaml, rejectUnknownFields: true}\n"
    )
    plain = _load(monkeypatch, tmp_path / "p.yaml", fast=False)
    fast = _load(monkeypatch, tmp_path / "p.yaml", fast=True)
    schemas = _schemas_by_route(yaml.safe_load((DATA / "shop30.yaml").read_text()))
    store = json.loads((DATA / "store31.json").read_text())
    schemas["store-order"] = {
        **store["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        "$defs": store.get("components", {}).get("schemas", {}),
    }
    _same_policies(plain, fast, schemas)


def _same_policies(
    plain: CompiledPolicy, fast: CompiledPolicy, schemas: dict[str, Any], name: str = ""
) -> None:
    assert plain.route_ids == fast.route_ids and plain.version == fast.version
    for a, b in zip(plain.routes, fast.routes, strict=True):
        assert (a.id, a.methods, a.pattern) == (b.id, b.methods, b.pattern)
        if a.contract is not None and b.contract is not None:
            assert (a.contract.engine, a.contract.unknown) == (
                b.contract.engine,
                b.contract.unknown,
            )
    requests = list(_requests(plain))
    for route in plain.routes:
        schema = schemas.get(route.id)
        path = "/" + "/".join(
            "1" if seg.startswith("{") else seg for seg in route.pattern.text.strip("/").split("/")
        )
        for _, body in _bodies(schema):
            requests.append((route.methods[0], path, {"body": body}))
            requests.append((route.methods[0], path, {"sample": body, "redacted": True}))
    assert len(requests) > 10 * len(plain.routes)
    got_plain, got_fast = decide_all(plain, requests), decide_all(fast, requests)
    for request, x, y in zip(requests, got_plain, got_fast, strict=True):
        assert x == y, request
    actions = {d[0] for d in got_plain}
    hits = {h[0] for d in got_plain for h in d[2]}
    assert len(actions) >= 2 and any(h.startswith("contract.") for h in hits)
    if not name.startswith("stripe"):  # (JSON bodies to Stripe's form-only operations: 415)
        assert {"contract.schema.invalid", "contract.unknownField"} <= hits
