"""Route matching: exact, templates, wildcards, most specific wins, methods."""

from __future__ import annotations

import pytest

from extauthz.engine.matcher import PatternError, RouteMatcher, parse_pattern


def matcher(*routes: tuple[str, str, str]) -> RouteMatcher[str]:
    entries = []
    for method, path, name in routes:
        entries.append(((method,), parse_pattern(path), name))
    return RouteMatcher(entries)


def test_exact_template_and_wildcards() -> None:
    m = matcher(
        ("GET", "/users", "list"),
        ("GET", "/users/{id}", "get"),
        ("GET", "/users/{id}/posts/{postId}", "post"),
        ("GET", "/static/*", "static"),
        ("*", "/api/**", "api"),
    )
    assert m.match("GET", "/users") == ("list", {})
    assert m.match("GET", "/users/42") == ("get", {"id": "42"})
    assert m.match("GET", "/users/42/posts/7") == ("post", {"id": "42", "postId": "7"})
    assert m.match("GET", "/static/app.js") == ("static", {})
    assert m.match("GET", "/static/js/app.js") is None  # '*' is exactly one segment
    assert m.match("POST", "/api/x/y/z") == ("api", {})
    assert m.match("POST", "/api") == ("api", {})  # '**' matches zero segments too
    assert m.match("GET", "/nothing") is None


def test_most_specific_wins() -> None:
    m = matcher(
        ("GET", "/users/me", "me"),
        ("GET", "/users/{id}", "by-id"),
        ("GET", "/users/*", "star"),
        ("GET", "/users/**", "rest"),
        ("GET", "/**", "catch-all"),
    )
    assert m.match("GET", "/users/me")[0] == "me"
    assert m.match("GET", "/users/42")[0] == "by-id"
    assert m.match("GET", "/users/42/x")[0] == "rest"
    assert m.match("GET", "/other")[0] == "catch-all"
    assert m.match("GET", "/")[0] == "catch-all"


def test_specificity_is_decided_left_to_right_with_backtracking() -> None:
    m = matcher(
        ("GET", "/a/{x}/c", "template-then-literal"),
        ("GET", "/a/b/{y}", "literal-then-template"),
    )
    assert m.match("GET", "/a/b/c")[0] == "literal-then-template"
    assert m.match("GET", "/a/z/c") == ("template-then-literal", {"x": "z"})
    # The more specific branch fails deeper down: fall back to the other one.
    m2 = matcher(("GET", "/a/b/d", "literal"), ("GET", "/a/{x}/c", "template"))
    assert m2.match("GET", "/a/b/c") == ("template", {"x": "b"})


def test_method_exact_beats_star_and_mismatch_falls_back() -> None:
    m = matcher(
        ("*", "/items", "any"),
        ("POST", "/items", "create"),
        ("GET", "/items/{id}", "get"),
        ("*", "/items/**", "items-any"),
    )
    assert m.match("POST", "/items")[0] == "create"
    assert m.match("DELETE", "/items")[0] == "any"
    assert m.match("GET", "/items/1")[0] == "get"
    assert m.match("DELETE", "/items/1")[0] == "items-any"  # template's method differs


def test_root_route() -> None:
    m = matcher(("GET", "/", "root"))
    assert m.match("GET", "/") == ("root", {})
    assert m.match("GET", "/x") is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("users", "start with '/'"),
        ("/users/", "end with '/'"),
        ("/a//b", "empty segment"),
        ("/a/../b", "dot segments"),
        ("/a/**/b", "last segment"),
        ("/files/{id}.json.{", "not allowed"),
        ("/a/{id}/{id}", "used twice"),
        ("/a/{1x}", "bad template"),
        ("/a/%2F", "not allowed"),
    ],
)
def test_bad_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason.replace("(", r"\(")):
        parse_pattern(pattern)


def test_duplicate_route_is_refused() -> None:
    with pytest.raises(PatternError, match="already matched"):
        matcher(("GET", "/users/{id}", "a"), ("GET", "/users/{uid}", "b"))


def test_thousand_routes_match_like_ten() -> None:
    """Structural, not timed: a lookup visits a bounded number of trie nodes."""
    entries = []
    for i in range(1000):
        entries.append((("GET",), parse_pattern(f"/svc{i}/items/{{id}}"), f"get{i}"))
        entries.append((("POST",), parse_pattern(f"/svc{i}/items"), f"post{i}"))
        entries.append((("GET",), parse_pattern(f"/svc{i}/files/**"), f"files{i}"))
    m = RouteMatcher(entries)
    assert m.match("GET", "/svc500/items/abc") == ("get500", {"id": "abc"})
    assert m.match("POST", "/svc999/items") == ("post999", {})
    assert m.match("GET", "/svc7/files/a/b/c") == ("files7", {})
    assert m.match("GET", "/svc1000/items/x") is None
    # Deep hostile path with no '**' route nearby: rejected without walking it.
    assert m.match("GET", "/x" * 10_000) is None


# --- property: the trie agrees with a brute-force reading of "most specific wins" ---------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_RANK = {"**": 0, "*": 1, "{}": 2}


def _brute(routes, method: str, path: str):
    segs = path.split("/")[1:] if path != "/" else []
    best = None
    for methods, pattern, value in routes:
        if method not in methods and "*" not in methods:
            continue
        p = list(pattern.segments)
        rest = p and p[-1] == "**"
        fixed = p[:-1] if rest else p
        if len(segs) < len(fixed) or (not rest and len(segs) != len(fixed)):
            continue
        if not all(f in ("{}", "*") or f == s for f, s in zip(fixed, segs, strict=False)):
            continue
        if any(f in ("{}", "*") and not s for f, s in zip(fixed, segs, strict=False)):
            continue
        # Compare segment by segment of the request ('**' covers what remains, even nothing),
        # then a route without '**' over one with it, then an exact method over '*'.
        key = [_RANK.get(f, 3) for f in fixed] + [0] * (len(segs) - len(fixed))
        rank = (key, 0 if rest else 1, 1 if method in methods else 0)
        if best is None or rank > best[0]:
            best = (rank, value)
    return None if best is None else best[1]


segment = st.sampled_from(["a", "b", "c", "{x}", "*"])


@st.composite
def route_sets(draw):
    seen = set()
    routes = []
    for i in range(draw(st.integers(1, 12))):
        segs = draw(st.lists(segment, min_size=0, max_size=3))
        names = iter(f"p{j}" for j in range(10))
        segs = [f"{{{next(names)}}}" if s == "{x}" else s for s in segs]
        if draw(st.booleans()):
            segs.append("**")
        text = "/" + "/".join(segs)
        pattern = parse_pattern(text)
        method = draw(st.sampled_from(["GET", "POST", "*"]))
        if (method, pattern.segments) in seen:
            continue
        seen.add((method, pattern.segments))
        routes.append(((method,), pattern, f"r{i}"))
    return routes


@settings(max_examples=300, deadline=None)
@given(
    route_sets(),
    st.sampled_from(["GET", "POST", "PUT"]),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=5),
)
def test_trie_matches_brute_force(routes, method: str, segs: list[str]) -> None:
    path = "/" + "/".join(segs)
    got = RouteMatcher(routes).match(method, path)
    assert (got[0] if got else None) == _brute(routes, method, path)


def test_templates_inside_a_segment() -> None:
    m = matcher(
        ("GET", "/files/{name}.{ext}", "name-ext"),
        ("GET", "/files/{name}.json", "json"),
        ("GET", "/files/{id}", "id"),
        ("GET", "/files/a.json", "literal"),
        ("POST", "/v1/{name}:cancel", "cancel"),
        ("GET", "/r/{a}-{b}-{c}", "three"),
        ("GET", "/d/v{major}.{minor}/x", "version"),
    )
    assert m.match("GET", "/files/a.json") == ("literal", {})
    assert m.match("GET", "/files/b.json") == ("json", {"name": "b"})  # more literal text wins
    # leftmost literal, at least one character each: what a lazy ([^/]+?) would capture
    assert m.match("GET", "/files/a.tar.gz") == ("name-ext", {"name": "a", "ext": "tar.gz"})
    assert m.match("GET", "/files/abc") == ("id", {"id": "abc"})
    assert m.match("GET", "/files/.json") == ("id", {"id": ".json"})  # a template is never empty
    assert m.match("POST", "/v1/op1:cancel") == ("cancel", {"name": "op1"})
    assert m.match("POST", "/v1/:cancel") is None
    assert m.match("GET", "/r/1-2-3-4") == ("three", {"a": "1", "b": "2", "c": "3-4"})
    assert m.match("GET", "/r/1-2") is None
    assert m.match("GET", "/d/v1.2/x") == ("version", {"major": "1", "minor": "2"})
    assert m.match("GET", "/d/v1/x") is None


def test_a_segment_with_templates_falls_back_when_deeper_segments_fail() -> None:
    m = matcher(("GET", "/a/{x}.json/z", "partial"), ("GET", "/a/{y}/w", "whole"))
    assert m.match("GET", "/a/q.json/w") == ("whole", {"y": "q.json"})
    assert m.match("GET", "/a/q.json/z") == ("partial", {"x": "q"})


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("/a/{x}{y}", "two templates need literal text between them"),
        ("/a/{x}.{x}", "used twice"),
        ("/a/{x}/{x}.j", "used twice"),
        ("/a/{x", "bad template"),
        ("/a/x}", "bad template"),
        ("/a/{x y}.j", "bad template"),
        ("/a/{x}.j%", "not allowed"),
        ("/a/{x}*", "not allowed"),
    ],
)
def test_bad_templates_inside_a_segment_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        parse_pattern(pattern)


def test_same_skeleton_is_a_duplicate() -> None:
    with pytest.raises(PatternError, match="already matched"):
        matcher(("GET", "/f/{a}.{b}", "one"), ("GET", "/f/{x}.{y}", "two"))
