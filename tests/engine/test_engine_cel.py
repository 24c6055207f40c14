"""CEL rules: semantics (false/error = hit), variables, monitor action, field planning."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from extauthz.context import ClientInfo, Identity, RuntimeInfo
from extauthz.engine import cel as cel_mod
from extauthz.engine import evaluate
from extauthz.engine.cel import (
    CelPlan,
    CelProblem,
    CelRule,
    RequestView,
    compile_expr,
    leaf_name,
    make_plan,
    merge_needs,
)
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
    p = policy_with("request.body.json.sample == null && !request.body.present")
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
    assert d.action == "BLOCK" and d.rule_ids == ("request.malformed",)
    assert d.status_code == 400 and "request.body" in d.rule_hits[0].message


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
        "routeId",
        "body",
        "contentType",
        "bodyPresent",
        "bodySize",
        "bodyRedacted",
        "bodyJson",
        "bodyEnvelope",
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
        ("request.body.json.sample.size() > 0", None),
        ("size(request.body.json.sample) > 0", None),
        ("'qty' in request.body.json.sample", None),
        ("request.body.json.sample == null", None),
        (
            "request.body.json.sample['a'] == 1 && request.body.json.sample[request.query.k] == 1",
            None,
        ),
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


# Constant-key map reads as leaves (FastPath): same hits and messages as the plain variables,
# taken only when every key read is present in a mapping.


def cel_plan(*exprs: str, message: str | None = None) -> CelPlan:
    needs: dict = {}
    rules = []
    for i, e in enumerate(exprs):
        program, used = compile_expr(e)
        merge_needs(needs, used)
        rules.append(CelRule(f"r{i}", e, program, message=message))
    return make_plan(tuple(rules), needs)


def cel_hits(plan: CelPlan, body, ctx, **kw) -> tuple[list[tuple[str, str]], bool]:
    """The hits (checked equal to the plain path's) and whether the fast path was taken."""
    c = ctx(
        "POST",
        "/items/1",
        headers=kw.pop("headers", {"x-api-version": "2"}),
        query={"dry": "1"},
        identity=Identity(True, "u1", "t1", ("items:write",), kw.pop("claims", {"org": "o"})),
    )
    view = RequestView(c, "/items/1", {"itemId": "1"}, body)
    fast, plain = [], []
    cel_mod.evaluate(plan, view, fast)
    cel_mod.evaluate(replace(plan, fast=None), view, plain)
    assert fast == plain
    taken = plan.fast is not None and cel_mod._fast_context(plan.fast, view) is not None
    return [(h.id, h.message) for h in fast], taken


def test_constant_key_reads_become_leaves() -> None:
    plan = cel_plan(
        "identity.authenticated", "identity.tenant == request.body.tenantId && request.body.a.b"
    )
    assert plan.fast is not None
    sources = [program.source for _, program in plan.fast.pairs]
    assert sources == [
        "cs__identity__authenticated",
        "cs__identity__tenant == cs__request__body__k__tenantId && cs__request__body__k__a.b",
    ]
    assert plan.fast.flat[0][0] == "cs__identity__authenticated" and not plan.fast.nested


def test_leaf_names_are_identifiers_and_distinct() -> None:
    keys = ["a", "a_b", "x-y", "x_y", "é", "", "it's", "a b", "61"]
    names = [leaf_name("request", "body", k) for k in keys]
    assert len(set(names)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names)


@pytest.mark.parametrize(
    ("body", "taken", "expected"),
    [
        ({"tenantId": "t1"}, True, []),
        ({"tenantId": "t2"}, True, [("r0", "identity.tenant == request.body.tenantId is false")]),
        ({"other": 1}, False, [("r0", "identity.tenant == request.body.tenantId could not be evaluated: 'tenantId'")]),
        (["tenantId"], False, None),
        ("tenantId", False, None),  # ``'tenantId' in 'tenantId'`` holds, but it is no mapping
        (None, False, None),
        ({"tenantId": None}, True, [("r0", "identity.tenant == request.body.tenantId is false")]),
    ],
)  # fmt: skip
def test_fast_path_only_when_every_key_is_in_a_mapping(body, taken, expected, ctx) -> None:
    plan = cel_plan("identity.tenant == request.body.tenantId")
    hits, was_taken = cel_hits(plan, body, ctx)
    assert was_taken == taken
    if expected is not None:
        assert hits == expected
    else:
        assert [m for _, m in hits] and "could not be evaluated" in hits[0][1]


def test_fast_path_needs_every_key_of_the_route(ctx) -> None:
    plan = cel_plan("request.body.a == 1", "request.body.b == 2 || true")
    assert cel_hits(plan, {"a": 1, "b": 2}, ctx)[1]
    hits, taken = cel_hits(plan, {"a": 1}, ctx)  # b is missing, in a rule that absorbs errors
    assert not taken and hits == []


def test_has_keeps_the_map_whole(ctx) -> None:
    plan = cel_plan("has(request.body.a) && request.body.a == 'x'")
    assert plan.fast is None  # has(m.k) needs the map: no leaf for body
    assert cel_hits(plan, {"b": 1}, ctx)[0] == [
        ("r0", "has(request.body.a) && request.body.a == 'x' is false")
    ]
    plan = cel_plan("has(request.body.a.b)")  # a select on the leaf: a leaf it can be
    assert plan.fast is not None
    assert cel_hits(plan, {"a": {"b": 1}}, ctx) == ([], True)
    assert cel_hits(plan, {"a": {}}, ctx) == ([("r0", "has(request.body.a.b) is false")], True)
    hits, taken = cel_hits(plan, {}, ctx)
    assert not taken and hits == [("r0", "has(request.body.a.b) could not be evaluated: 'a'")]


@pytest.mark.parametrize(
    ("expr", "present", "absent"),
    [
        ("request.headers['x-api-version'] == '2'", {"headers": {"x-api-version": "2"}}, {"headers": {}}),
        ('request.body["it\'s"] == 1', {"body": {"it's": 1}}, {"body": {"its": 1}}),
        ("request.body['é'] == 1 && request.body['a b'] == 2", {"body": {"é": 1, "a b": 2}}, {"body": {"é": 1}}),
        ("identity.claims.org == 'o'", {}, {"claims": {}}),
        ("request.query.dry == '1' && request.params.itemId == '1'", {}, None),
    ],
)  # fmt: skip
def test_escaped_and_other_map_keys(expr: str, present, absent, ctx) -> None:
    plan = cel_plan(expr)
    assert plan.fast is not None
    body = present.pop("body", {})
    assert cel_hits(plan, body, ctx, **present) == ([], True)
    if absent is not None:
        body = absent.pop("body", {})
        hits, taken = cel_hits(plan, body, ctx, **absent)
        assert not taken and len(hits) == 1 and "could not be evaluated" in hits[0][1]


def test_unconvertible_leaf_reports_as_the_plain_path(ctx) -> None:
    plan = cel_plan("request.body.x == 'a'")
    hits, taken = cel_hits(plan, {"x": "\ud800"}, ctx)
    assert not taken
    # one hit, the plain path's wording: the public name, no library internals
    assert len(hits) == 1 and hits[0][0] == "request.malformed"
    assert "request.body holds text" in hits[0][1] and "cs__" not in hits[0][1]
    assert "Conversion" not in hits[0][1] and "PyDict" not in hits[0][1]


def test_keys_in_strings_and_messages_are_kept(ctx) -> None:
    plan = cel_plan("request.body.a == 'request.body.b'", message="custom")
    assert cel_hits(plan, {"a": "request.body.b"}, ctx) == ([], True)
    assert cel_hits(plan, {"a": "x"}, ctx) == ([("r0", "custom")], True)
    assert cel_hits(plan, {"b": "x"}, ctx) == ([("r0", "custom")], False)


def test_macro_variables_named_like_ours_disable_the_rewrite(ctx) -> None:
    expr = "identity.scopes.exists(cs__identity__tenant, cs__identity__tenant == identity.tenant)"
    program, needs = compile_expr(expr)
    assert program.source == expr and needs == {
        ("identity", "scopes", False): None,
        ("identity", "tenant", False): None,
    }
    hits, _ = cel_hits(cel_plan(expr), {}, ctx)  # scope 'items:write' is not tenant 't1'
    assert hits == [("r0", f"{expr} is false")]


def test_a_field_named_like_a_variable_is_not_read() -> None:
    _, needs = compile_expr("identity.claims.exists(k, k. request == 'x')")
    assert needs == {("identity", "claims", True): None}
