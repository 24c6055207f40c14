"""``request.query`` from other PEPs: a query left in the path, nested objects, other types.

Upstream's Express PEP sends ``req.query`` as qs parses it (``?f[u]=x`` is ``{"f": {"u": "x"}}``,
``?a=1&a=2`` is ``{"a": ["1", "2"]}``, ``?a[0][b]=x`` is ``{"a": [{"b": "x"}]}``) and
``req.path`` without the query; other callers put the query in the path. Every value must
reach the checks as a value: flattened to the key it had on the wire, repeats comma-joined.
"""

from __future__ import annotations

from typing import Any

import pytest

from extauthz import InvalidContext, RequestContext
from extauthz.context import MAX_QUERY_DEPTH

META = "http://169.254.169.254/latest/meta-data/"


def parsed(path: str, query: Any = None) -> tuple[str, dict[str, str]]:
    request: dict[str, Any] = {"method": "GET", "path": path}
    if query is not None:
        request["query"] = query
    ctx = RequestContext.from_dict({"request": request})
    return ctx.request.path, dict(ctx.request.query)


@pytest.mark.parametrize(
    ("path", "query", "want_path", "want_query"),
    [
        # flat strings: unchanged
        ("/x", {"a": "1", "b": ""}, "/x", {"a": "1", "b": ""}),
        # a query string inside request.path: split off, decoded like Envoy's adapter
        ("/api/x?u=" + META, None, "/api/x", {"u": META}),
        ("/x?u=http%3A%2F%2F10.0.0.1%2F&q=a+b", None, "/x", {"u": "http://10.0.0.1/", "q": "a b"}),
        ("/x?a", None, "/x", {"a": ""}),
        ("/x?", None, "/x", {}),
        ("/x?a=1&a=2", None, "/x", {"a": "1,2"}),  # repeated keys: comma-joined
        ("/x?f[u]=v", None, "/x", {"f[u]": "v"}),  # brackets kept as the wire key
        # fragments are never the server's; dropped from path and query (as Envoy's adapter)
        ("/x#frag", None, "/x", {}),
        ("/x?a=1#frag", None, "/x", {"a": "1"}),
        ("/x#frag?a=1", None, "/x", {"a": "1"}),
        # an encoded '?' is part of the path, not a query
        ("/x%3Fu=" + META, None, "/x%3Fu=" + META, {}),
        # nested objects (qs): flattened to the wire keys
        ("/x", {"f": {"u": META}}, "/x", {"f[u]": META}),
        ("/x", {"f": {"g": {"h": "v"}}}, "/x", {"f[g][h]": "v"}),
        # arrays: plain values repeat the key; objects and arrays in them are indexed
        ("/x", {"a": ["1", "2"]}, "/x", {"a": "1,2"}),
        ("/x", {"a": [{"b": "x"}, {"b": "y"}]}, "/x", {"a[0][b]": "x", "a[1][b]": "y"}),
        ("/x", {"a": [["x", "y"], ["z"]]}, "/x", {"a[0]": "x,y", "a[1]": "z"}),
        ("/x", {"a": ["1", {"b": "2"}]}, "/x", {"a": "1", "a[1][b]": "2"}),
        # JSON types other than strings: their JSON spelling; null and empty: the bare name
        ("/x", {"n": 10, "f": 1.5, "t": True, "u": False}, "/x",
         {"n": "10", "f": "1.5", "t": "true", "u": "false"}),
        ("/x", {"z": None, "e": {}, "l": []}, "/x", {"z": "", "e": "", "l": ""}),
        # both: the path's pairs join the object's; a pair sent twice counts once
        ("/x?a=1&b=2", {"a": "1"}, "/x", {"a": "1", "b": "2"}),
        ("/x?a=2", {"a": "1"}, "/x", {"a": "1,2"}),
        ("/x?f[u]=" + META, {"f": {"u": META}}, "/x", {"f[u]": META}),
        # a raw query string in request.query
        ("/x", "u=http%3A%2F%2F127.0.0.1%2F&a=1&a=2", "/x", {"u": "http://127.0.0.1/", "a": "1,2"}),
        ("/x", "?a=1", "/x", {"a": "1"}),
    ],
)  # fmt: skip
def test_query_shapes(path: str, query: Any, want_path: str, want_query: dict[str, str]) -> None:
    assert parsed(path, query) == (want_path, want_query)


def test_the_split_form_round_trips() -> None:
    ctx = RequestContext.from_dict(
        {"request": {"method": "GET", "path": "/x?b=2", "query": {"f": {"u": ["1", "2"]}}}}
    )
    again = RequestContext.from_json(ctx.to_json())
    assert again == ctx
    assert again.request.path == "/x"
    assert dict(again.request.query) == {"f[u]": "1,2", "b": "2"}


@pytest.mark.parametrize(
    ("path", "query", "reason"),
    [
        ("?a=1", None, "request.path: no path before the query"),
        ("#x", None, "request.path: no path before the query"),
        ("/x", ["a", "1"], "request.query: expected an object, got list"),
        ("/x", 3, "request.query: expected an object, got int"),
    ],
)
def test_bad_shapes_are_refused_naming_the_field(path: str, query: Any, reason: str) -> None:
    with pytest.raises(InvalidContext, match=reason.replace("[", r"\[")):
        parsed(path, query)


def test_nesting_is_bounded() -> None:
    deep: Any = "v"
    for _ in range(MAX_QUERY_DEPTH):
        deep = {"k": deep}
    _path, query = parsed("/x", {"f": deep})
    assert query == {"f" + "[k]" * MAX_QUERY_DEPTH: "v"}
    with pytest.raises(InvalidContext, match=r"request\.query\.f: nested deeper than 32 levels"):
        parsed("/x", {"f": {"k": deep}})
