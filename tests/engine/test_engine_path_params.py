"""Path parameters (issue 24, class 7): a ``;`` in a path segment is refused, never matched.

Tomcat, Jetty and Spring drop ``;...`` from a segment (``/api/users/;x=1`` is their
``/api/users/``); other servers keep it. The PDP cannot know which reading the upstream makes,
so any ``;`` in the path, raw or percent-encoded, is ``request.path.ambiguous``; in particular
``/api/users/;x=1`` never reaches ``/api/users/{id}`` as ``id=";x=1"``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extauthz.context import HttpRequest, RequestContext
from extauthz.engine import evaluate
from extauthz.engine.canonical import canonicalize
from extauthz.policy import load_policy_text

POLICY = load_policy_text("""
policyVersion: "0.1"
defaults: {mode: enforce, unmatchedRouteAction: allow}
routes:
  - id: users.get
    match: {method: GET, path: "/api/users/{id}"}
  - id: users.list
    match: {method: GET, path: /api/users}
  - id: files
    match: {method: GET, path: "/files/{name}.{ext}"}
  - id: admin
    match: {method: GET, path: "/admin/**"}
    rules:
      - {id: admin.never, type: cel, action: block, config: {expr: "true"}}
""")

VARIANTS = [
    "/api/users/;x=1",
    "/api/users/1;jsessionid=ABC",
    "/api/users;x=1/1",
    "/api/users/;",
    "/api/users/%3Bx=1",
    "/api/users/1%3bjsessionid=x",
    "/api/users/%253Bx",  # double encoding: ambiguous for its own reason, still refused
    "/api/;/users/1",
    "/;/admin/x",
    "/healthz/..;/admin/users",
    "/api/users/..;x=1/1",
    "/files/a;b.txt",
    "/files/a.txt;v=1",
    "/api/users/1;",
    "/api/users/1/;",
]


@pytest.mark.parametrize("raw", VARIANTS)
def test_semicolon_paths_are_flagged(raw: str) -> None:
    c = canonicalize(raw)
    assert c.semicolon or c.ambiguous is not None


@pytest.mark.parametrize("raw", VARIANTS)
def test_semicolon_paths_are_refused_with_one_clear_hit(
    raw: str, ctx: Callable[..., RequestContext]
) -> None:
    d = evaluate(POLICY, ctx("GET", raw))
    assert d.action == "BLOCK", d
    assert "request.path.ambiguous" in d.rule_ids
    if "%25" not in raw:
        hit = next(h for h in d.rule_hits if h.id == "request.path.ambiguous")
        assert "';'" in hit.message


def test_semicolon_in_the_query_is_not_a_path_parameter(ctx) -> None:
    d = evaluate(POLICY, ctx("GET", "/api/users/7?filter=a;b"))
    assert d.allowed and d.metadata.route_id == "users.get"


segment = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%;"),
    min_size=0,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(segment, min_size=0, max_size=4),
    param=segment,
    after=segment,
    spelling=st.sampled_from([";", "%3B", "%3b"]),
)
def test_any_semicolon_anywhere_in_the_path_is_refused(
    before: list[str], param: str, after: str, spelling: str
) -> None:
    raw = "/" + "/".join([*before, after + spelling + param])
    c = canonicalize(raw)
    assert c.semicolon or c.ambiguous is not None, raw
    d = evaluate(POLICY, RequestContext(request=HttpRequest(method="GET", path=raw)))
    assert d.action == "BLOCK" and "request.path.ambiguous" in d.rule_ids, raw


@settings(max_examples=200, deadline=None)
@given(before=segment, param=segment, spelling=st.sampled_from([";", "%3B"]))
def test_no_semicolon_value_is_ever_allowed_through_a_template(
    before: str, param: str, spelling: str
) -> None:
    raw = f"/api/users/{before}{spelling}{param}"
    d = evaluate(POLICY, RequestContext(request=HttpRequest(method="GET", path=raw)))
    assert d.action == "BLOCK" and "request.path.ambiguous" in d.rule_ids, raw
