"""A load's shared metaschema checks (``SHARE_METASCHEMA_CHECKS``) change nothing but time.

The same policies (an OpenAPI spec whose operations share components, the shop/store test
documents, hand-written routes sharing a schema file) are loaded with the seam off (every
schema checked whole, as before) and on; they must decide a set of requests identically and
refuse broken schemas with the same file, path and reason.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from extauthz._exceptions import InvalidPolicy
from extauthz.engine.metaschema import MetaschemaChecks, _pieces
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import _compile, load_policy
from tests.engine.conftest import decide_all

DATA = Path(__file__).parent / "data" / "openapi"
N = 6
COMMON = {
    "components": {
        "schemas": {
            "Address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                "required": ["zip"],
            },
            "Money": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number", "minimum": 0},
                    "currency": {"type": "string", "enum": ["EUR", "USD"]},
                },
            },
        }
    }
}
SHARED = {  # a hand-written schema file with the same shape
    "type": "object",
    "properties": {"to": {"$ref": "#/$defs/Address"}, "n": {"type": "integer"}},
    "required": ["to"],
    "$defs": {"Address": COMMON["components"]["schemas"]["Address"]},
}
POLICY = """
policyVersion: "0.1"
defaults: {unmatchedRouteAction: block}
routes:
  - id: ship-a
    match: {method: POST, path: /ship/a}
    contract: {requestSchemaRef: ./shared.json, rejectUnknownFields: true}
  - id: ship-b
    match: {method: POST, path: /ship/b}
    contract: {requestSchemaRef: ./shared.json}
  - id: inline
    match: {method: POST, path: /inline}
    contract:
      requestSchema: INLINE
  - id: create-pet
    match: {method: POST, path: /pets}
    contract: {openapiRef: "./shop30.yaml#/paths/~1pets/post", rejectUnknownParameters: true}
  - id: patch-pet
    match: {method: PATCH, path: "/pets/{petId}"}
    contract: {openapiRef: "./shop30.yaml#/paths/~1pets~1{petId}/patch"}
  - id: create-order
    match: {method: POST, path: /orders}
    contract: {openapiRef: "./store31.json#/paths/~1orders/post", rejectUnknownFields: true}
openapi: {spec: ./big.yaml, rejectUnknownFields: true}
"""


def _spec(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for i in range(N):
        schemas[f"Req{i}"] = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "nullable": True, "maxLength": 8},
                "address": {"$ref": "./parts.yaml#/components/schemas/Address"},
                "price": {"$ref": "./parts.yaml#/components/schemas/Money"},
                "count": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
                **(extra if extra and i == 3 else {}),
            },
            "required": ["name"],
        }
        paths[f"/svc{i}/items/{{id}}"] = {
            "post": {
                "operationId": f"op{i}",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/Req{i}"}}
                    },
                },
                "responses": {"200": {"description": "ok"}},
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _write(tmp: Path, inline: Any = None, extra: dict[str, Any] | None = None) -> Path:
    for f in DATA.iterdir():
        shutil.copy(f, tmp / f.name)
    (tmp / "big.yaml").write_text(yaml.safe_dump(_spec(extra)))
    (tmp / "parts.yaml").write_text(yaml.safe_dump(COMMON))
    (tmp / "shared.json").write_text(json.dumps(SHARED))
    body = {**SHARED, "properties": {**SHARED["properties"], "x": {"type": "string"}}}
    text = textwrap.dedent(POLICY).replace("INLINE", json.dumps(inline or body))
    (tmp / "p.yaml").write_text(text)
    return tmp / "p.yaml"


def _both(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[Any, Any]:
    """(outcome with the seam off, outcome with it on): a policy, or the problems."""
    got = []
    for share in (False, True):
        monkeypatch.setattr(_compile, "SHARE_METASCHEMA_CHECKS", share)
        try:
            got.append(load_policy(path))
        except InvalidPolicy as exc:
            got.append([(p.file, p.path, p.reason) for p in exc.errors])
    return got[0], got[1]


ADDR = {"zip": "1", "street": "s"}
ITEM = {"name": "a", "address": ADDR, "price": {"amount": 1, "currency": "EUR"}, "count": 1}
PET = {"name": "Rex", "kind": {"type": "dog", "barks": True}, "owner": {"email": "a@b.example"}}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/svc0/items/1", {"body": ITEM}),
    ("POST", "/svc5/items/1", {"body": ITEM, "query": {"limit": "9"}}),
    ("POST", "/svc2/items/x", {"body": ITEM}),
    ("POST", "/svc3/items/1", {"body": {**ITEM, "name": None}}),
    ("POST", "/svc3/items/1", {"body": {**ITEM, "name": "123456789"}}),
    ("POST", "/svc1/items/1", {"body": {**ITEM, "count": 0}}),
    ("POST", "/svc1/items/1", {"body": {**ITEM, "address": {"street": "s"}}}),
    ("POST", "/svc1/items/1", {"body": {**ITEM, "price": {"currency": "GBP"}}}),
    ("POST", "/svc4/items/1", {"body": {**ITEM, "extra": 1}}),
    ("POST", "/svc4/items/1", {"body": {**ITEM, "address": {**ADDR, "x": 1}}}),
    ("POST", "/svc4/items/1", {"sample": {**ITEM, "count": "***"}, "redacted": True}),
    ("POST", "/svc4/items/1", {"sample": {"count": "***"}, "redacted": True}),
    ("POST", "/svc0/items/1", {}),
    ("POST", "/ship/a", {"body": {"to": ADDR}}),
    ("POST", "/ship/a", {"body": {"to": {"street": 1}}}),
    ("POST", "/ship/a", {"body": {"to": ADDR, "y": 1}}),
    ("POST", "/ship/b", {"body": {"to": ADDR, "y": 1}}),
    ("POST", "/inline", {"body": {"to": ADDR, "x": 5}}),
    ("POST", "/pets", {"body": PET, "headers": {"x-tenant": "acme"}}),
    ("POST", "/pets", {"body": {**PET, "id": 1}, "headers": {"x-tenant": "acme"}}),
    ("POST", "/pets", {"body": PET, "headers": {"x-tenant": "ACME"}, "query": {"q": "1"}}),
    ("PATCH", "/pets/3", {"body": {"name": "", "weight": 0}, "content_type": "application/json"}),
    ("POST", "/orders", {"body": {"sku": "ABC-1234", "qty": 1}}),
    ("POST", "/orders", {"body": {"sku": "ABC-1234", "qty": 1, "z": 0}}),
    ("GET", "/nowhere", {}),
]


def test_same_routes_and_decisions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    plain, shared = _both(monkeypatch, _write(tmp_path))
    assert isinstance(plain, CompiledPolicy) and isinstance(shared, CompiledPolicy)
    assert plain.route_ids == shared.route_ids and len(plain.route_ids) == 6 + N
    assert plain.version == shared.version
    for a, b in zip(plain.routes, shared.routes, strict=True):
        ca, cb = a.contract, b.contract
        assert ca is not None and cb is not None
        assert (ca.engine, ca.schema_source, ca.body_optional, ca.unknown) == (
            cb.engine, cb.schema_source, cb.body_optional, cb.unknown
        )  # fmt: skip
    decisions = decide_all(plain, REQUESTS)
    assert decisions == decide_all(shared, REQUESTS)
    assert len({str(d) for d in decisions}) > 10  # the requests do tell the routes apart


BROKEN = [
    # (inline schema of route "inline", extra property of operation op3, expected problem)
    ({**SHARED, "$defs": {**SHARED["$defs"], "Bad": {"minLength": -1}}}, None,
     ("routes[2].contract.requestSchema", "invalid JSON Schema at '/$defs/Bad/minLength'")),
    ({**SHARED, "type": "nope"}, None,
     ("routes[2].contract.requestSchema", "invalid JSON Schema at '/type'")),
    ({**SHARED, "$defs": [SHARED]}, None,
     ("routes[2].contract.requestSchema", "invalid JSON Schema at '/$defs'")),
]  # fmt: skip


@pytest.mark.parametrize(("inline", "extra", "expected"), BROKEN)
def test_same_refusals(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    inline: Any,
    extra: Any,
    expected: tuple[str, str],
) -> None:
    plain, shared = _both(monkeypatch, _write(tmp_path, inline, extra))
    assert plain == shared
    assert [(path, expected[1] in reason) for _, path, reason in plain] == [(expected[0], True)]


def test_same_warning_for_a_body_schema_that_cannot_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An OpenAPI body schema with a pattern RE2 cannot run is skipped with a warning (issue 28:
    # never a refused policy), the same one with the seam off and on.
    extra = {"code": {"type": "string", "pattern": "(?<=a)b"}}
    plain, shared = _both(monkeypatch, _write(tmp_path, None, extra))
    assert plain.warnings == shared.warnings
    assert [w for w in plain.warnings if "schema regex at '/$defs/Req3/properties/code" in w]


def test_the_seam_is_wired(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made: list[MetaschemaChecks] = []

    class Recording(MetaschemaChecks):
        def __init__(self) -> None:
            super().__init__()
            self.offered = 0
            made.append(self)

        def check(self, schema: Any) -> None:
            self.offered += len(_pieces(schema))
            super().check(schema)

    monkeypatch.setattr(_compile, "MetaschemaChecks", Recording)
    path = _write(tmp_path)
    for share in (False, True, True):
        monkeypatch.setattr(_compile, "SHARE_METASCHEMA_CHECKS", share)
        load_policy(path)
    assert len(made) == 2  # one per load with the seam on, none with it off
    first, second = made
    assert first is not second and first.passed and first.passed == second.passed
    # the N operations' bundles repeat Req's content, Address and Money (and their structural
    # twins): each is validated once, not once per operation
    assert 0 < first.validated < first.offered / 2
