"""CEL rules: semantics (false/error = hit), variables, monitor action, field planning."""

from __future__ import annotations

import pytest

from extauthz.context import ClientInfo, Identity, RuntimeInfo
from extauthz.engine import evaluate
from extauthz.engine.cel import CelProblem, compile_expr
from extauthz.policy import load_policy_text


def policy_with(*exprs: str, action: str = "block", path: str = "/items/{itemId}"):
    rules = "\n".join(
        f"      - {{id: r{i}, type: cel, action: {action}, config: {{expr: {e!r}}}}}"
        for i, e in enumerate(exprs)
    )
    return load_policy_text(
        f"""
policyVersion: "0.1"
defaults: {{mode: enforce}}
routes:
  - id: items
    match: {{method: "*", path: "{path}"}}
    rules:
{rules}
"""
    )


def run(p, ctx, **kw):
    c = ctx(
        kw.pop("method", "POST"),
        kw.pop("path", "/items/42"),
        body=kw.pop("body", {"qty": 2, "owner": "t1"}),
        headers={"x-api-version": "2"},
        query={"dry": "1"},
        identity=Identity(True, "u1", "t1", ("items:write",), {"role": "admin"}),
    )
    from dataclasses import replace

    c = replace(c, client=ClientInfo("10.0.0.1", "ua/1"), runtime=RuntimeInfo("svc", "prod"))
    return evaluate(p, c)


@pytest.mark.parametrize(
    "expr",
    [
        "request.method == 'POST'",
        "request.path == '/items/42'",
        "request.params.itemId == '42'",
        "request.headers['x-api-version'] == '2'",
        "request.query.dry == '1'",
        "request.body.qty == 2 && request.body.owner == identity.tenant",
        "request.contentType == 'application/json'",
        "identity.authenticated && identity.subject == 'u1'",
        "'items:write' in identity.scopes",
        "identity.claims.role == 'admin'",
        "client.ip == '10.0.0.1' && client.userAgent == 'ua/1'",
        "runtime.service == 'svc' && runtime.env == 'prod'",
        "identity.scopes.exists(s, s.startsWith('items:'))",
        "has(request.body.qty) && !has(request.body.nope)",
        "request.method == 'POST' ? request.body.qty < 10 : true",
    ],
)
def test_variables_hold(expr: str, ctx) -> None:
    d = run(policy_with(expr), ctx)
    assert d.action == "ALLOW", (expr, d.reason)


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("request.body.qty > 5", "is false"),
        ("request.body.missing == 1", "could not be evaluated"),
        ("request.body.qty + 'x' == 'y'", "could not be evaluated"),
        ("request.body.qty", "did not evaluate to a boolean"),
        ("false", "is false"),
    ],
)
def test_false_or_error_is_a_hit(expr: str, why: str, ctx) -> None:
    d = run(policy_with(expr), ctx)
    assert d.action == "BLOCK" and d.rule_ids == ("r0",)
    assert why in d.rule_hits[0].message


def test_body_is_null_without_a_parsed_body(ctx) -> None:
    p = policy_with("request.body == null")
    c = ctx("GET", "/items/1")
    assert evaluate(p, c).action == "ALLOW"


def test_monitor_action_reports_without_blocking(ctx) -> None:
    d = run(policy_with("false", action="monitor"), ctx)
    assert d.action == "MONITOR" and d.status_code == 200 and d.rule_ids == ("r0",)


def test_every_rule_is_evaluated(ctx) -> None:
    d = run(policy_with("false", "true", "1 == 2"), ctx)
    assert d.rule_ids == ("r0", "r2")


def test_unconvertible_request_data_is_a_hit_not_a_crash(ctx) -> None:
    p = policy_with("request.body.x == 'a'")
    c = ctx("POST", "/items/1", sample={"x": "\ud800"}, content_type="application/json")
    d = evaluate(p, c)
    assert d.action == "BLOCK" and d.rule_ids == ("r0",)


def test_compile_reads_fields_per_variable() -> None:
    program, needs = compile_expr("identity.authenticated && identity.tenant == request.body.t")
    assert needs == {
        ("identity", "authenticated", True): None,
        ("identity", "tenant", True): None,
        ("request", "body", True): frozenset({"t"}),
    }
    assert sorted(program.variables()) == [
        "cs__identity__authenticated", "cs__identity__tenant", "cs__request__body",
    ]  # fmt: skip
    _, needs = compile_expr("size(request) > 0 && 'request.headers' != ''")
    assert {fld for (var, fld, flat) in needs if var == "request" and not flat} == {
        "method",
        "path",
        "headers",
        "query",
        "params",
        "body",
        "contentType",
    }
    assert all(v is None for v in needs.values())
    _, needs = compile_expr("identity.scopes.exists(request, request == 'x')")
    assert needs == {("identity", "scopes", True): None}
    _, needs = compile_expr("has(identity.tenant) && identity.tenant != ''")
    assert needs == {("identity", "tenant", False): None, ("identity", "tenant", True): None}


@pytest.mark.parametrize(
    ("expr", "keys"),
    [
        ("request.headers['x-api-version'] == '2'", frozenset({"x-api-version"})),
        ('request.headers["a"] == request.headers.b', frozenset({"a", "b"})),
        ("has(request.body.qty)", frozenset({"qty"})),
        ("request.body.items.exists(i, i > 0)", frozenset({"items"})),
        ("request.body.size() > 0", None),
        ("size(request.body) > 0", None),
        ("'qty' in request.body", None),
        ("request.body == null", None),
        ("request.body['a'] == 1 && request.body[request.query.k] == 1", None),
    ],
)
def test_map_fields_are_pruned_to_the_keys_read(expr: str, keys) -> None:
    _, needs = compile_expr(expr)
    field = "headers" if "headers" in expr else "body"
    assert needs[("request", field, True)] == keys


def test_pruned_maps_keep_semantics(ctx) -> None:
    p = policy_with(
        "has(request.body.qty) && !has(request.body.nope)",
        "has(identity.tenant) && has(request.headers.host) == false",
        "request.headers['x-api-version'] == '2'",
        "request.body.owner == identity.tenant",
    )
    assert run(p, ctx).action == "ALLOW"
    d = run(p, ctx, body={"qty": 1})
    assert d.rule_ids == ("r3",)  # owner missing: an error, so a hit


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("identity.authenticated &&& true", "line 1, column 26"),
        ("request.method ==", "invalid CEL expression"),
        ("user.admin", "unknown variable 'user'"),
        ("request.bdy.x == 1", "request has no field 'bdy'"),
        ("identity.tenantId == 'x'", "identity has no field 'tenantId'"),
    ],
)
def test_compile_errors(expr: str, reason: str) -> None:
    with pytest.raises(CelProblem, match=reason):
        compile_expr(expr)
