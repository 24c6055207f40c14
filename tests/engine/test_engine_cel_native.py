"""``cel_native``: the CEL subset evaluated without the library, pinned to the library.

Three levels: one program against ``cel`` itself over random sources and values (whatever the
closures answer, the library answers the same, or they fall back), one route's hits with the
seam on and off, and whole decisions of policies over random requests.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from extauthz.context import Identity
from extauthz.engine import cel as cel_mod
from extauthz.engine import evaluate
from extauthz.engine.cel import CelPlan, RequestView
from extauthz.engine.cel_native import (
    FALLBACK,
    MAX_TOKENS,
    compile_native,
    simple_variables,
)
from extauthz.engine.model import CompiledPolicy
from extauthz.policy import load_policy_text
from tests.engine.conftest import build_ctx
from tests.engine.test_engine_cel import cel_plan

cel = cel_mod.cel
NAMES = ("a", "b", "c")


def library(source: str, variables: dict[str, Any]) -> tuple[str, Any]:
    """What the ``cel`` library answers: ("ok", value) or ("error", None)."""
    try:
        return "ok", cel.compile(source).execute(cel.Context(variables=variables))
    except BaseException as exc:  # the library raises pyo3 panics as BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return "error", None


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# -- one program against the library ---------------------------------------------------------

_LITERAL = st.sampled_from(
    ['"x"', "'x'", '""', "''", '"acme"', '"é"', "0", "1", "42", "true", "false", "null"]
)
_LEAVES = st.one_of(st.sampled_from([*NAMES, "d"]), _LITERAL)


_BINARY = ("==", "!=", "&&", "||", "<", "<=", ">", "in")


def _grow(children: st.SearchStrategy[str], outside: bool) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    grown = [
        children.map(lambda c: f"!{c}"),
        children.map(lambda c: f"({c})"),
        *(two.map(lambda p, op=op: f"{p[0]} {op} {p[1]}") for op in _BINARY),
        two.map(lambda p: f"{p[0]}&&{p[1]}||{p[0]}"),  # no spaces, mixed precedence
        two.map(lambda p: f"{p[0]}>={p[1]}"),
        st.tuples(children, st.lists(_LITERAL, max_size=3)).map(
            lambda p: f"{p[0]} in [{', '.join(p[1])}]"
        ),
    ]
    if outside:  # operators the subset refuses, mixed in
        grown += [
            two.map(lambda p: f"{p[0]} in [{p[1]}]"),
            two.map(lambda p: f"{p[0]} + {p[1]}"),
            children.map(lambda c: f"size({c})"),
            children.map(lambda c: f"-{c}"),
            two.map(lambda p: f"{p[0]} ? {p[1]} : false"),
        ]
    return st.one_of(*grown)


SUBSET = st.recursive(_LEAVES, lambda c: _grow(c, False), max_leaves=8)
MIXED = st.recursive(_LEAVES, lambda c: _grow(c, True), max_leaves=8)
# Few distinct values of each type, so that comparisons often meet their own type.
SIMPLE_VALUES = st.sampled_from(
    [True, False, "x", "", "acme", "é", 0, 1, 42, 2**63 - 1, -(2**63), None, 1.0, 0.0, -0.0,
     math.nan, math.inf, [], ["x"], ["acme", "x"], ["x", 1], [1, 42], [True], [None], [1.0]]
)  # fmt: skip
VALUES = st.one_of(
    SIMPLE_VALUES,
    st.text(max_size=4),
    st.sampled_from(["\ud800", "\x00", 2**63, 2**64, -(2**63) - 1]),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(0, 3), max_size=2),
    st.lists(st.sampled_from(["x", "\ud800", 2**64, [1]]), max_size=2),
    st.dictionaries(st.sampled_from(["k", "x"]), st.integers(0, 3), max_size=2),
)
SIMPLE = st.fixed_dictionaries({n: SIMPLE_VALUES for n in NAMES})
VARIABLES = st.fixed_dictionaries({n: VALUES for n in NAMES})


def check_against_library(source: str, variables: dict[str, Any]) -> None:
    try:
        cel.compile(source)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        assume(False)  # not CEL: never a rule's program
    native = compile_native(source)
    if native is None or not simple_variables(variables):
        return
    result = native(variables)
    if result is FALLBACK:
        return
    kind, value = library(source, variables)
    assert kind == "ok", (source, variables, result)
    assert same(result, value), (source, variables, result, value)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SUBSET, SIMPLE)
def test_native_answers_what_the_library_answers(source: str, variables: dict[str, Any]) -> None:
    check_against_library(source, variables)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MIXED, VARIABLES)
def test_native_answers_what_the_library_answers_on_any_input(
    source: str, variables: dict[str, Any]
) -> None:
    check_against_library(source, variables)


@settings(max_examples=500, deadline=None)
@given(VARIABLES)
def test_simple_variables_are_the_ones_the_library_converts(variables: dict[str, Any]) -> None:
    if simple_variables(variables):
        cel.Context(variables=variables)  # raises if the claim were wrong


@pytest.mark.parametrize(
    ("source", "variables", "expected"),
    [
        # CEL's commutative && and ||: an error or a non-boolean on one side is absorbed
        ("a && b", {"a": False, "b": "x"}, False),
        ("a && b", {"a": "x", "b": False}, False),
        ("a && d", {"a": False}, False),  # d undeclared
        ("d || a", {"a": True}, True),
        ("a && b", {"a": True, "b": "x"}, FALLBACK),
        ("a || b", {"a": False, "b": 1}, FALLBACK),
        ("!a", {"a": 1}, FALLBACK),
        # equality: same types compare, different types are the library's
        ("a == b", {"a": "x", "b": "x"}, True),
        ("a != b", {"a": 1, "b": 2}, True),
        ("a == b", {"a": None, "b": None}, True),
        ("a == b", {"a": math.nan, "b": math.nan}, False),
        ("a == b", {"a": True, "b": 1}, FALLBACK),
        ("a == b", {"a": 1, "b": 1.0}, FALLBACK),
        ("a == 'x'", {"a": None}, FALLBACK),
        # precedence: ! over ==, == over &&, && over ||
        ("!a == b", {"a": True, "b": False}, True),
        ("a || b && c", {"a": True, "b": False, "c": False}, True),
        ("a == b && c", {"a": 1, "b": 1, "c": False}, False),
        ("a", {"a": "text"}, "text"),  # not a boolean: the rule's hit says so
        # in: a same-typed equal element decides; elements of another type are the library's
        ("a in ['x', 'y']", {"a": "y"}, True),
        ("a in ['x', 'y']", {"a": "z"}, False),
        ("a in []", {"a": "z"}, False),
        ("a in ['x', 1]", {"a": "z"}, FALLBACK),
        ("a in ['y', 1]", {"a": "y"}, True),
        ("a in b", {"a": "s", "b": ["t", "s"]}, True),
        ("a in b", {"a": "s", "b": "s"}, FALLBACK),
        ("a == b", {"a": ["s"], "b": ["s"]}, FALLBACK),
        # ordering: same types, no NaN, no null
        ("a < b", {"a": 1, "b": 2}, True),
        ("a <= b", {"a": "é", "b": "z"}, False),
        ("a > b", {"a": True, "b": False}, True),
        ("a >= b", {"a": 1.5, "b": 1.5}, True),
        ("a < b", {"a": math.nan, "b": 1.0}, FALLBACK),
        ("a < b", {"a": None, "b": None}, FALLBACK),
        ("a < b", {"a": 1, "b": 2.0}, FALLBACK),
        ("a < b == c", {"a": 1, "b": 2, "c": True}, True),
    ],
)
def test_semantics_examples(source: str, variables: dict[str, Any], expected: Any) -> None:
    native = compile_native(source)
    assert native is not None
    result = native(variables)
    assert result is FALLBACK if expected is FALLBACK else same(result, expected)
    if expected is not FALLBACK:  # the library agrees (``d`` undeclared included)
        kind, value = library(source, variables)
        assert kind == "ok" and same(value, expected)


@pytest.mark.parametrize(
    ("source", "variables", "python", "library_answer"),
    [
        ("a in b", {"a": 1, "b": [1.0]}, None, ("ok", True)),  # a type-strict reading: false
        ("a in b", {"a": True, "b": [1]}, True, ("ok", False)),  # Python: True == 1
        ("a == b", {"a": True, "b": 1}, True, ("ok", False)),
        ("a == b", {"a": [True], "b": [1]}, True, ("ok", False)),
        ("a < b", {"a": math.nan, "b": 1.0}, False, ("error", None)),
        ("a < b", {"a": None, "b": None}, None, ("error", None)),
    ],
)
def test_where_python_and_cel_differ_the_library_decides(
    source: str, variables: dict[str, Any], python: Any, library_answer: tuple[str, Any]
) -> None:
    """Python's operators would answer these differently from CEL: the closures must not."""
    native = compile_native(source)
    assert native is not None and simple_variables(variables)
    assert native(variables) is FALLBACK
    assert library(source, variables) == library_answer
    if python is not None:  # what a naive translation to Python would have answered
        a, b = variables["a"], variables["b"]
        naive = {"in": operator.contains, "==": operator.eq, "<": operator.lt}[source.split()[1]]
        naive = naive(b, a) if source.split()[1] == "in" else naive(a, b)
        assert naive is python and ("ok", python) != library_answer


@pytest.mark.parametrize(
    "source",
    [
        "a.b",
        "a[0] == 1",
        "a in [b]",
        "a in ['x',]",
        "a in [['x']]",
        "a in [-1]",
        "[1] == a",
        "a + b == c",
        "size(a) == 1",
        "a == 1u",
        "a == 1.0",
        "a == 0x1",
        "a == -1",
        "a == 9223372036854775808",
        'a == "x\\"y"',
        "a == r'x'",
        'a == """x"""',
        "a == b'x'",
        "a ? b : c",
        "a // comment",
        "in == a",
        "(" * 40 + "a" + ")" * 40,
        "!" * 40 + "a",
        " && ".join(["a"] * (MAX_TOKENS // 2 + 1)),
    ],
)
def test_outside_the_subset(source: str) -> None:
    assert compile_native(source) is None


def test_a_long_chain_inside_the_bound_evaluates() -> None:
    source = " && ".join(["a"] * (MAX_TOKENS // 2))
    native = compile_native(source)
    assert native is not None and native({"a": True}) is True


@pytest.mark.parametrize(
    "value",
    ["\ud800", 2**63, -(2**63) - 1, [[1]], ["\ud800"], [2**63], {"k": 1}, (1,), b"x", object()],
)
def test_values_outside_the_subset(value: Any) -> None:
    assert not simple_variables({"a": True, "b": value})


# -- a route's hits, seam on and off -----------------------------------------------------------


class _NoLibrary:
    """Stands for ``cel`` where the native path must decide alone."""

    @staticmethod
    def Context(**_: Any) -> Any:
        raise AssertionError("the library was asked to build a context")


def hits_both_ways(
    plan: CelPlan, body: Any, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str]]:
    view = RequestView(build_ctx("POST", "/items/1", identity=identity), "/items/1", {}, body)
    native: list = []
    cel_mod.evaluate(plan, view, native)
    monkeypatch.setattr(cel_mod, "NATIVE", False)
    plain: list = []
    cel_mod.evaluate(plan, view, plain)
    monkeypatch.setattr(cel_mod, "NATIVE", True)
    assert native == plain
    return [(h.id, h.message) for h in native]


TENANT = "identity.tenant != '' && request.body.tenantId == identity.tenant"


@pytest.mark.parametrize(
    ("body", "identity", "expected"),
    [
        ({"tenantId": "t1"}, Identity(True, "u", "t1"), []),
        ({"tenantId": "t2"}, Identity(True, "u", "t1"), [("r1", f"{TENANT} is false")]),
        (
            {"tenantId": "t1"},
            Identity(False),
            [("r0", "identity.authenticated is false"), ("r1", f"{TENANT} is false")],
        ),
        ({"tenantId": 7}, Identity(True, "u", "t1"), [("r1", f"{TENANT} is false")]),
        ({"tenantId": "\ud800"}, Identity(True, "u", "t1"), None),
        ({"other": 1}, Identity(True, "u", "t1"), None),
        ({"tenantId": None}, Identity(True, "u", ""), [("r1", f"{TENANT} is false")]),
    ],
)
def test_route_hits_equal_with_and_without_the_seam(
    body: Any, identity: Identity, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = cel_plan("identity.authenticated", TENANT)
    assert plan.fast is not None and plan.fast.native is not None
    hits = hits_both_ways(plan, body, identity, monkeypatch)
    if expected is not None:
        assert hits == expected
    else:
        assert len(hits) == 1 and hits[0][0] in ("request.malformed", "r1")


def test_the_native_path_decides_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = cel_plan("identity.authenticated", TENANT)
    identity = Identity(True, "u", "t1")
    view = RequestView(
        build_ctx("POST", "/items/1", identity=identity), "/", {}, {"tenantId": "t2"}
    )
    monkeypatch.setattr(cel_mod, "cel", _NoLibrary)
    hits: list = []
    cel_mod.evaluate(plan, view, hits)
    assert [h.id for h in hits] == ["r1"]
    monkeypatch.setattr(cel_mod, "NATIVE", False)  # the library's path, without a library
    hits = []
    cel_mod.evaluate(plan, view, hits)
    assert [h.id for h in hits] == ["request.malformed"]


def test_plain_plans_without_leaves_are_native_too(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = cel_plan("identity.authenticated", "identity.subject != 'root'")
    assert plan.fast is None and plan.native is not None
    for identity in (Identity(True, "u", "t"), Identity(True, "root", "t"), Identity(False)):
        hits_both_ways(plan, None, identity, monkeypatch)
    plan = cel_plan("has(request.body.a)")  # a map whole: the library's
    assert plan.native is None


def test_one_rule_outside_the_subset_leaves_the_route_to_the_library() -> None:
    plan = cel_plan("identity.authenticated", "size(identity.scopes) > 0")
    assert plan.native is None and (plan.fast is None or plan.fast.native is None)


# -- whole decisions, seam on and off ----------------------------------------------------------

POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: items
    match: {method: POST, path: "/items/{itemId}"}
    rules:
      - {id: auth, type: cel, config: {expr: identity.authenticated}}
      - {id: tenant, type: cel, config: {expr: "identity.tenant != '' && request.body.tenantId == identity.tenant"}}
      - {id: flag, type: cel, action: monitor, config: {expr: "!(request.body.dryRun == true) || identity.subject == 'ops'"}}
      - {id: count, type: cel, config: {expr: "request.body.count != 0 || request.body.count == null"}}
      - {id: scope, type: cel, config: {expr: "'items:write' in identity.scopes || request.body.count > 2"}}
      - {id: tier, type: cel, config: {expr: "request.body.tier in ['free', 'pro'] && request.body.tier <= 'pro'"}}
"""

BODY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["t1", "t2", "", "\ud800", "ops", "free", "pro", "zz", 2**70, 1.0, math.nan]),
    st.lists(st.integers(0, 2), max_size=2),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["tenantId", "dryRun", "count", "tier", "x"]), BODY_VALUES),
    st.builds(
        Identity,
        st.booleans(),
        st.sampled_from([None, "ops", "u"]),
        st.sampled_from([None, "", "t1", "t2"]),
        st.sampled_from([(), ("items:write",), ("other", "items:write"), ("\ud800",)]),
    ),
)
def test_decisions_equal_with_and_without_the_seam(
    body: dict[str, Any], identity: Identity
) -> None:
    policy = _policy()
    ctx = build_ctx("POST", "/items/1", body=None, identity=identity, sample=body)
    ctx = replace(ctx, id="x")
    native = evaluate(policy, ctx)
    cel_mod.NATIVE = False
    try:
        plain = evaluate(policy, ctx)
    finally:
        cel_mod.NATIVE = True
    assert native == plain


@functools.cache
def _policy() -> CompiledPolicy:
    policy = load_policy_text(POLICY)
    fast = policy.routes[0].cel.fast
    assert fast is not None and fast.native is not None  # the seam matters here
    return policy


def test_the_demo_routes_are_native(demo: CompiledPolicy) -> None:
    """The demo's rules are in the subset: its checks never build a ``cel.Context``."""
    for route in demo.routes:
        plan = route.cel
        if plan is None:
            continue
        assert plan.native is not None or (plan.fast is not None and plan.fast.native is not None)
