"""contract.openapiRef: contracts and parameter checks from real OpenAPI 3.0/3.1 documents."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from extauthz._exceptions import InvalidPolicy
from extauthz.engine import evaluate
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import load_policy
from tests.engine.conftest import build_ctx

DATA = Path(__file__).parent / "data" / "openapi"
POLICY = """
policyVersion: "0.1"
routes:
  - id: create-pet
    match: {method: POST, path: /pets}
    contract: {openapiRef: "./shop30.yaml#/paths/~1pets/post", rejectUnknownParameters: true}
  - id: patch-pet
    match: {method: PATCH, path: "/pets/{petId}"}
    contract: {openapiRef: "./shop30.yaml#/paths/~1pets~1{petId}/patch"}
  - id: create-order
    match: {method: POST, path: /orders}
    contract: {openapiRef: "./store31.json#/paths/~1orders/post", rejectUnknownFields: true}
"""
PET = {"name": "Rex", "kind": {"type": "dog", "barks": True}, "owner": {"email": "a@b.example"}}
TENANT = {"x-tenant": "acme"}


def _load(tmp_path: Path, text: str = POLICY) -> CompiledPolicy:
    for f in DATA.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "p.yaml").write_text(textwrap.dedent(text))
    return load_policy(tmp_path / "p.yaml")


def _refused(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidPolicy) as info:
        _load(tmp_path, text)
    return [(p.path, p.reason) for p in info.value.errors]


def _ids(policy: CompiledPolicy, *args: object, **kw: object) -> list[str]:
    d = evaluate(policy, build_ctx(*args, **kw))  # type: ignore[arg-type]
    return [h.id for h in d.rule_hits]


@pytest.fixture
def policy(tmp_path: Path) -> CompiledPolicy:
    return _load(tmp_path)


def test_conforming_request_passes(policy: CompiledPolicy) -> None:
    assert _ids(policy, "POST", "/pets", body=PET, headers=TENANT, query={"limit": "5"}) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({**PET, "id": 7}, "readOnly"),  # readOnly properties are refused in a request
        ({**PET, "kind": {"type": "cow"}}, "oneOf"),
        ({**PET, "weight": 0}, "exclusiveMinimum: true (3.0 boolean form)"),
        ({**PET, "owner": {"friend": {"email": "x@y.example"}}}, "cross-file, recursive $ref"),
        ({"kind": {"type": "cat"}}, "allOf + required name"),
    ],
)
def test_body_breaking_the_spec_is_blocked(policy: CompiledPolicy, body: object, why: str) -> None:
    assert _ids(policy, "POST", "/pets", body=body, headers=TENANT) == [
        "contract.schema.invalid"
    ], why


def test_30_dialect_nullable_and_example(policy: CompiledPolicy) -> None:
    assert _ids(policy, "POST", "/pets", body={**PET, "nickname": None}, headers=TENANT) == []
    assert _ids(policy, "POST", "/pets", body={**PET, "nickname": 3}, headers=TENANT) == [
        "contract.schema.invalid"
    ]


def test_request_body_required(policy: CompiledPolicy) -> None:
    assert _ids(policy, "POST", "/pets", headers=TENANT) == ["contract.schema.invalid"]
    assert _ids(policy, "PATCH", "/pets/3") == []  # requestBody.required: false
    patch = "application/merge-patch+json"  # the only type PetPatch declares
    assert _ids(policy, "PATCH", "/pets/3", body={"name": ""}, content_type=patch) == [
        "contract.schema.invalid"
    ]
    # any other type is refused: 415
    d = evaluate(policy, build_ctx("PATCH", "/pets/3", body={"name": "x"}))
    assert ([h.id for h in d.rule_hits], d.status_code) == (["contract.mediaType"], 415)


@pytest.mark.parametrize(
    ("query", "headers", "path", "fragment"),
    [
        ({"limit": "abc"}, TENANT, "/pets", "query parameter 'limit'"),
        ({"limit": "101"}, TENANT, "/pets", "query parameter 'limit'"),
        ({"tags": "a,z"}, TENANT, "/pets", "query parameter 'tags'"),
        ({"trace": "yes"}, TENANT, "/pets", "query parameter 'trace'"),  # cross-file $ref
        ({}, {}, "/pets", "header parameter 'x-tenant' is required"),  # path-item level
        ({}, {"x-tenant": "ACME!"}, "/pets", "header parameter 'x-tenant'"),
    ],
)
def test_parameter_breaking_the_spec_is_blocked(
    policy: CompiledPolicy, query: dict[str, str], headers: dict[str, str], path: str,
    fragment: str,
) -> None:  # fmt: skip
    d = evaluate(policy, build_ctx("POST", path, body=PET, headers=headers, query=query))
    assert [h.id for h in d.rule_hits] == ["contract.parameter.invalid"]
    assert fragment in d.rule_hits[0].message


def test_typed_parameters_pass(policy: CompiledPolicy) -> None:
    q = {"limit": "100", "tags": "a,c", "trace": "true"}
    assert _ids(policy, "POST", "/pets", body=PET, headers=TENANT, query=q) == []
    assert _ids(policy, "PATCH", "/pets/0") == ["contract.parameter.invalid"]  # minimum: 1
    assert _ids(policy, "PATCH", "/pets/x1") == ["contract.parameter.invalid"]


def test_undeclared_query_parameter(policy: CompiledPolicy) -> None:
    d = evaluate(policy, build_ctx("POST", "/pets", body=PET, headers=TENANT, query={"debug": "1"}))
    assert [h.id for h in d.rule_hits] == ["contract.parameter.unknown"]
    assert "'debug'" in d.rule_hits[0].message
    assert _ids(policy, "PATCH", "/pets/3", query={"debug": "1"}) == []  # not asked for there


def test_31_document(policy: CompiledPolicy) -> None:
    ok = {"sku": "ABC-1234", "qty": 1, "note": None, "items": ["x"]}
    assert _ids(policy, "POST", "/orders", body=ok) == []
    assert _ids(policy, "POST", "/orders", body={**ok, "qty": 0}) == ["contract.schema.invalid"]
    assert _ids(policy, "POST", "/orders", body={**ok, "sku": "abc"}) == ["contract.schema.invalid"]
    assert "contract.schema.invalid" in _ids(policy, "POST", "/orders", body={**ok, "extra": 1})


def test_files_join_the_policy_and_its_version(tmp_path: Path) -> None:
    p = _load(tmp_path)
    # hot reload watches every file read, the spec's cross-file references included
    assert sorted(f.name for f in p.files) == [
        "common.yaml",
        "p.yaml",
        "shop30.yaml",
        "store31.json",
    ]
    common = tmp_path / "common.yaml"
    common.write_text(common.read_text().replace("boolean", "integer"))
    assert load_policy(tmp_path / "p.yaml").version != p.version


def test_schema_pointer_and_policy_schema_wins(tmp_path: Path) -> None:
    text = """
    policyVersion: "0.1"
    routes:
      - id: dog
        match: {method: POST, path: /dogs}
        contract: {openapiRef: "./shop30.yaml#/components/schemas/Dog"}
      - id: both
        match: {method: POST, path: /pets}
        contract:
          openapiRef: "./shop30.yaml#/paths/~1pets/post"
          requestSchema: {type: object, required: [only]}
    """
    p = _load(tmp_path, text)
    assert _ids(p, "POST", "/dogs", body={"type": "dog"}) == []
    assert _ids(p, "POST", "/dogs", body={"type": "dog", "x": 1}) == ["contract.schema.invalid"]
    # both: the body schema from the policy, the parameters from the operation
    assert _ids(p, "POST", "/pets", body={"only": 1}, headers=TENANT) == []
    assert _ids(p, "POST", "/pets", body={"only": 1}) == ["contract.parameter.invalid"]


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("./missing.yaml#/paths", "OpenAPI file not found"),
        ("./shop30.yaml#/paths/~1nope/post", "shop30.yaml#/paths/~1nope/post: no '/nope'"),
        ("./common.yaml#/components", "an OpenAPI 3.0.x or 3.1.x document is needed"),
        ("./bad.yaml#/paths/~1a/post", "bad.yaml#/paths/~1a/post/responses"),
        ("./dangling.yaml#/paths/~1a/post", "Missing"),
    ],
)
def test_broken_document_or_pointer_is_refused(tmp_path: Path, ref: str, fragment: str) -> None:
    (tmp_path / "bad.yaml").write_text(
        'openapi: 3.0.3\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    post:\n'
        "      responses: 5\n"
    )
    (tmp_path / "dangling.yaml").write_text(
        'openapi: 3.1.0\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    post:\n'
        "      requestBody:\n        content:\n          application/json:\n"
        "            schema: {$ref: '#/components/schemas/Missing'}\n"
        "      responses: {'200': {description: ok}}\n"
    )
    text = f"""
    policyVersion: "0.1"
    routes:
      - id: r
        match: {{method: POST, path: /a}}
        contract: {{openapiRef: "{ref}"}}
    """
    errors = _refused(tmp_path, text)
    assert len(errors) == 1
    path, reason = errors[0]
    assert path == "routes[0].contract.openapiRef"
    assert fragment in reason, reason


BAD_COMPONENT = """\
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a:
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/A'}
      responses: {'200': {description: ok}}
components:
  schemas:
    A:
      type: object
      properties:
        x: {type: string, pattern: 5}
"""


def test_a_bad_component_schema_is_named_where_it_is(tmp_path: Path) -> None:
    """openapi-spec-validator reports an error inside a component schema by its path in that
    schema (``/properties/x/pattern``); the refusal names the place in the document."""
    (tmp_path / "bad.yaml").write_text(BAD_COMPONENT)
    text = """
    policyVersion: "0.1"
    routes:
      - id: r
        match: {method: POST, path: /a}
        contract: {openapiRef: "./bad.yaml#/paths/~1a/post"}
    """
    ((path, reason),) = _refused(tmp_path, text)
    assert path == "routes[0].contract.openapiRef"
    assert "bad.yaml#/components/schemas/A/properties/x/pattern: 5 is not of type 'string'" in (
        reason
    ), reason
    assert "bad.yaml#/properties/x/pattern" not in reason, reason


@pytest.mark.parametrize(
    ("parts", "instance", "expected"),
    [
        (["components", "schemas", "A", "type"], "object", "#/components/schemas/A/type"),
        (["properties", "x", "pattern"], 5, "#/components/schemas/A/properties/x/pattern"),
        (["properties", "y", "minLength"], -1,
         " (one of 2 places: #/components/schemas/B/properties/y/minLength, "
         "#/components/schemas/C/properties/y/minLength; the validator named only "
         "/properties/y/minLength)"),
        (["properties", "x", "pattern"], "5",
         " (in a schema the validator did not name, at /properties/x/pattern)"),
        (["items", 0, "type"], "nope", "#/components/schemas/D/items/0/type"),
        ([], None, "#/"),
        # a $ref the validator followed: the path is the referring place, the value the target's
        (["components", "schemas", "A", "type"], {"type": "x"}, "#/components/schemas/A/type"),
    ],
    ids=["from-the-root", "inside-one-schema", "ambiguous", "nowhere", "array-index", "root",
         "resolves-with-another-value"],
)  # fmt: skip
def test_error_location(parts: list[Any], instance: Any, expected: str) -> None:
    from extauthz.policy._openapi import error_location

    bad = {"type": "object", "properties": {"y": {"minLength": -1}}}
    doc = {
        "components": {
            "schemas": {
                "A": {"type": "object", "properties": {"x": {"type": "string", "pattern": 5}}},
                "B": bad,
                "C": {**bad},
                "D": {"items": [{"type": "nope"}]},
            }
        }
    }
    assert error_location(doc, parts, instance) == expected


def test_contract_rule_config_reaches_openapi_ref(tmp_path: Path) -> None:
    """Upstream's ``{type: contract, config: {...}}`` merges into the route's contract."""
    text = """
    policyVersion: "0.1"
    routes:
      - id: dog
        match: {method: POST, path: /dogs}
        rules:
          - id: dog-contract
            type: contract
            action: monitor
            config: {openapiRef: "./shop30.yaml#/components/schemas/Dog"}
    """
    p = _load(tmp_path, text)
    d = evaluate(p, build_ctx("POST", "/dogs", body={"type": "cow"}))
    assert [h.id for h in d.rule_hits] == ["dog-contract"]
    assert d.action == "MONITOR"


def test_sealed_policy_cannot_read_a_spec() -> None:
    from extauthz.policy import load_policy_bytes

    with pytest.raises(InvalidPolicy) as info:
        load_policy_bytes(
            b'policyVersion: "0.1"\nroutes:\n- id: r\n  match: {path: /r}\n'
            b"  contract: {openapiRef: ./shop30.yaml#/components/schemas/Dog}\n",
            base_dir=DATA,
            sealed=True,
        )
    assert "cannot read the server's files" in info.value.errors[0].reason


SPEC_POLICY = """
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes:
  - id: health
    match: {method: GET, path: /health}
openapi:
  spec: ./store31.json
  pathPrefix: /api
  operations:
    getOrder:
      mode: monitor
      rules: [{id: no-admin, type: cel, config: {expr: "request.headers['x-role'] != 'admin'"}}]
"""


def test_routes_from_a_spec(tmp_path: Path) -> None:
    p = _load(tmp_path, SPEC_POLICY)
    assert p.route_ids == ("health", "createOrder", "getOrder")  # deleteOrder: x-... skip
    ok = {"sku": "ABC-1234", "qty": 1}
    assert _ids(p, "POST", "/api/orders", body=ok) == []
    # (the CEL rule on the missing qty fails closed as well)
    assert _ids(p, "POST", "/api/orders", body={"sku": "ABC-1234"})[0] == "contract.schema.invalid"
    # x-cel-expression: upstream's per-operation rule, id from the operationId
    assert _ids(p, "POST", "/api/orders", body={**ok, "qty": 101}) == ["createOrder.cel"]
    # x-contractshield: rejectUnknownParameters for this operation
    assert _ids(p, "POST", "/api/orders", body=ok, query={"x": "1"}) == [
        "contract.parameter.unknown"
    ]
    # the policy's own overrides per operation
    d = evaluate(p, build_ctx("GET", "/api/orders/o-1", headers={"x-role": "admin"}))
    assert ([h.id for h in d.rule_hits], d.action) == (["no-admin"], "MONITOR")
    d = evaluate(p, build_ctx("GET", "/api/orders/x", headers={"x-role": "user"}))
    assert ([h.id for h in d.rule_hits], d.action) == (["contract.parameter.invalid"], "MONITOR")
    assert _ids(p, "DELETE", "/api/orders/o-1") == ["route.unmatched"]
    assert sorted(f.name for f in p.files) == ["p.yaml", "store31.json"]


def test_spec_route_problems_name_the_operation(tmp_path: Path) -> None:
    text = SPEC_POLICY.replace("request.headers['x-role'] != 'admin'", "request.nope(")
    errors = _refused(tmp_path, text)
    assert [e[0] for e in errors] == ["openapi[GET /orders/{orderId}].rules[0].config.expr"]
    text = SPEC_POLICY.replace("mode: monitor", "mode: loud")
    assert [e[0] for e in _refused(tmp_path, text)] == ["openapi[GET /orders/{orderId}].mode"]
    text = SPEC_POLICY.replace("store31.json", "nope.json")
    assert _refused(tmp_path, text)[0][0] == "openapi.spec"


def test_cli_from_openapi_prints_a_policy_that_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    for f in DATA.iterdir():
        shutil.copy(f, tmp_path / f.name)
    run = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "from-openapi", "store31.json"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (tmp_path / "gen.yaml").write_text(run.stdout)
    p = load_policy(tmp_path / "gen.yaml")
    assert p.route_ids == ("createOrder", "getOrder", "deleteOrder")
    assert _ids(p, "POST", "/orders", body={"sku": "ABC-1234", "qty": 101}) == ["createOrder.cel"]
    bad = subprocess.run(
        [sys.executable, "-m", "extauthz", "policy", "from-openapi", "common.yaml"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1 and "an OpenAPI 3.0.x or 3.1.x document is needed" in bad.stderr
