"""Canonical paths: decoding, dot segments, slashes; ambiguous encodings are flagged."""

from __future__ import annotations

import pytest
from _bounded import assert_linear

from extauthz.engine.canonical import canonicalize


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/api/v1/users", "/api/v1/users"),
        ("/api/v1/users/", "/api/v1/users"),
        ("//api///v1//users", "/api/v1/users"),
        ("/api/./v1/users", "/api/v1/users"),
        ("/api/v2/../v1/users", "/api/v1/users"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/%61pi/v1", "/api/v1"),
        ("/api/%2e%2e/admin", "/admin"),
        ("/caf%C3%A9", "/café"),
        ("/a/b/..", "/a"),
        ("/a/b/.", "/a/b"),
        ("/users?id=1&x=2", "/users"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    assert canonicalize(raw).path == canonical


def test_query_is_split_off() -> None:
    c = canonicalize("/search?q=a%20b&x")
    assert (c.path, c.query) == ("/search", "q=a%20b&x")


def test_clean_paths_are_not_ambiguous() -> None:
    for raw in ("/api/v1/users/42", "/caf%C3%A9", "/a/./b", "/%7Euser"):
        assert canonicalize(raw).ambiguous is None, raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("/api/users%2F42", "encoded slash"),
        ("/api/users%2f42", "encoded slash"),
        ("/api/users%5C42", "encoded backslash"),
        ("/api/users%00.json", "control"),
        ("/api/%252e%252e/admin", "double"),
        ("/api/%C0%AE%C0%AE/admin", "UTF-8"),
        ("/api/%E0%80%AF", "UTF-8"),
        ("/api/%FF", "UTF-8"),
        ("/api/%zz", "invalid percent"),
        ("/api\\..\\admin", "backslash"),
        ("/api/a\tb", "control"),
        ("api/v1", "does not start"),
    ],
)
def test_ambiguous_encodings_are_flagged(raw: str, reason: str) -> None:
    c = canonicalize(raw)
    assert c.ambiguous is not None and reason in c.ambiguous


def test_dot_segments_mark_traversal() -> None:
    assert canonicalize("/a/../b").traversal
    assert canonicalize("/a/%2e%2e/b").traversal
    assert not canonicalize("/a/..b/c").traversal
    assert canonicalize("/a/..b/c").path == "/a/..b/c"


def test_hostile_path_is_linear_time() -> None:
    def path(n: int) -> str:
        return "/" + "%2e%2e/" * (n // 2) + "a" * n

    assert_linear(canonicalize, path, 5_000, "dot segments")  # counted, not timed
    assert_linear(canonicalize, lambda n: "/" + "a/" * n, 5_000, "segments")
    c = canonicalize("/" + "%2e%2e/" * 20_000 + "a" * 50_000)
    assert c.path == "/" + "a" * 50_000


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_pieces = st.sampled_from(["a", "b", ".", "..", "", "%2e", "%2E%2e", "%61", "x%20y", "~"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_pieces, max_size=8), st.booleans())
def test_canonical_form_is_a_fixed_point(pieces: list[str], trailing: bool) -> None:
    raw = "/" + "/".join(pieces) + ("/" if trailing else "")
    c = canonicalize(raw)
    assert c.ambiguous is None
    assert c.path.startswith("/")
    segs = c.path.split("/")[1:]
    assert c.path == "/" or all(s not in ("", ".", "..") for s in segs)
    assert "%" not in c.path  # every escape in the pieces decodes to a plain character
    again = canonicalize(c.path)
    assert again.path == c.path and not again.traversal
