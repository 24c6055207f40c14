"""Bodies and limits: parsing by content type and hostile input in bounded time.

Bounded by construction, not by a clock: a limit must fire before the expensive part (the
JSON parser is never called), work is counted (``_bounded.assert_linear``), and the pre-scan's
regexes have shapes that cannot restart inside a run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from re._constants import MAXREPEAT  # type: ignore[import-not-found]
from typing import Any

import pytest
from _bounded import assert_linear, parse_regex
from hypothesis import given
from hypothesis import strategies as st

from extauthz.context import Body, RequestContext
from extauthz.engine import body as b
from extauthz.engine import evaluate
from extauthz.engine.decoders import _base
from extauthz.engine.decoders import json as json_decoder
from extauthz.engine.limits import Limits, body_size, measure
from extauthz.policy import load_policy_text

POLICY = """
policyVersion: "0.1"
defaults:
  mode: enforce
  limits: {maxBodyBytes: 1048576, maxJsonDepth: 32, maxArrayLength: 1000}
routes:
  - id: echo
    match: {method: POST, path: /echo}
"""


@pytest.fixture(scope="module")
def policy():
    return load_policy_text(POLICY)


@pytest.fixture
def parser_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times the JSON decoder handed text to the parser (``json.py``'s ``_decode``)."""
    calls: list[int] = []
    real = json_decoder._decode

    def counted(text: str) -> object:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(json_decoder, "_decode", counted)
    yield calls


def parse(raw: bytes, content_type: str = "application/json", depth: int = 32):
    return b.parse(Body(True, len(raw), raw=raw), content_type, depth, 1 << 20)


def test_content_types() -> None:
    assert parse(b'{"a":1}').kind == b.JSON
    assert parse(b'{"a":1}', "application/vnd.api+json; charset=utf-8").kind == b.JSON
    assert parse(b'{"a":1}', "APPLICATION/JSON").kind == b.JSON
    form = parse(b"a=1&b=x%20y&a=2", "application/x-www-form-urlencoded")
    assert form.kind == b.FORM
    assert form.value == {"a": "1,2", "b": "x y"}
    assert form.form_pairs == (("a", "1"), ("b", "x y"), ("a", "2"))
    assert parse(b"\x89PNG\r\n", "image/png").kind == b.OPAQUE
    assert parse(b"hello", "").kind == b.OPAQUE
    assert b.parse(Body(), "application/json", 32, 100).kind == b.NONE


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        " application/json ",
        "application/json; charset=utf-8",
    ],
)
def test_media_type_fast_path_agrees_with_the_general_one(content_type: str) -> None:
    assert b.media_type(content_type) == "application/json"
    assert parse(b'{"a": [1, {"b": 2}]}', content_type) == b.ParsedBody(
        b.JSON, {"a": [1, {"b": 2}]}, depth=3
    )


@pytest.mark.parametrize(
    ("raw", "value", "inspected", "duplicates"),
    [
        (b'{"a": 1, "a": 2}', {"a": 2}, {"a": [1, 2]}, ("a",)),
        (b'{"x": {"k": 1, "k": 3}}', {"x": {"k": 3}}, {"x": {"k": [1, 3]}}, ("x.k",)),
        (b'{"a": NaN}', None, None, ()),
        (b"[Infinity]", [float("inf")], None, ()),
        (b"\xef\xbb\xbf{}", {}, None, ()),
        (b'{"a": 1} {"a": "x"}', {"a": 1}, [{"a": 1}, {"a": "x"}], ()),
    ],
)
def test_json_a_lenient_upstream_reads_is_read_leniently(
    raw: bytes, value: Any, inspected: Any, duplicates: tuple[str, ...]
) -> None:
    """Issue 24: what was malformed (and so never inspected under another label) is read as a
    lenient upstream reads it; every value goes to the detectors (``inspect``)."""
    parsed = parse(raw)
    assert parsed.kind == b.JSON
    if value is not None:
        assert parsed.value == value
    assert parsed.inspect == inspected and parsed.duplicates == duplicates


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a": 1,}', "invalid JSON"),
        (b'{"a": "\xff"}', "invalid UTF-8"),
        (b'{"n": ' + b"1" * 5000 + b"}", "invalid JSON"),
    ],
)
def test_malformed_json_is_deterministic(raw: bytes, reason: str) -> None:
    parsed = parse(raw)
    assert parsed.kind == b.MALFORMED
    assert parsed.error is not None and reason in parsed.error


@pytest.mark.parametrize(
    "text",
    [
        '{"a": }',
        "[1,]",
        "[",
        "]",
        '{"a":1}}',
        "[1] x",
        "[1] ]",
        '[{"a": [1, ]}]',
        '{"a" 1}',
        " [1]",
        "[1] ",
        "\n{}\n",
        '"s"',
        "1",
        "{}",
    ],
)
def test_json_values_and_errors_are_the_ones_json_loads_gives(text: str) -> None:
    parsed = parse(text.encode())
    try:
        want = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a lenient upstream reads the first value (issue 24)
            first, end = json.JSONDecoder().raw_decode(text.lstrip())
            assert (parsed.kind, parsed.value) == (b.JSON, first)
            assert parsed.inspect == [first, text.lstrip()[end:].strip()]
            return
        assert (parsed.kind, parsed.error) == (
            b.MALFORMED,
            f"invalid JSON: {exc.msg} at char {exc.pos}",
        )
    else:
        assert (parsed.kind, parsed.value) == (b.JSON, want)


def test_depth_prescan_ignores_brackets_in_strings() -> None:
    assert b.json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert b.json_depth(b'{"a": "\\"[[[[", "b": [[1]]}') == 3
    assert parse(b'{"a": "' + b"[" * 100 + b'"}').kind == b.JSON


def test_hundred_thousand_deep_nesting_is_refused_without_recursion(
    policy, ctx: Callable[..., RequestContext], parser_calls: list[int]
) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    parsed = parse(raw)
    assert parsed.kind == b.TOO_DEEP and parsed.depth == 100_000
    d = evaluate(policy, ctx("POST", "/echo", raw=raw, content_type="application/json"))
    assert d.action == "BLOCK" and d.rule_ids == ("limit.json.depth",)
    assert parser_calls == []  # the pre-scan refused it: the parser never saw it
    parse(b"[[1]]")
    assert parser_calls == [5]  # (the seam counts: a shallow body does reach the parser)


def test_deep_sample_from_adapter_is_measured_iteratively(
    policy, ctx: Callable[..., RequestContext]
) -> None:
    deep: list = []
    node = deep
    for _ in range(50_000):
        child: list = []
        node.append(child)
        node = child
    d = evaluate(policy, ctx("POST", "/echo", sample=deep, content_type="application/json"))
    assert d.rule_ids == ("limit.json.depth",)


def test_million_element_array(
    policy, ctx: Callable[..., RequestContext], parser_calls: list[int]
) -> None:
    raw = b"[" + b"0," * 999_999 + b"0]"  # 2 MB: over maxBodyBytes, never parsed
    d = evaluate(policy, ctx("POST", "/echo", raw=raw, content_type="application/json"))
    assert d.rule_ids == ("limit.body.max",) and d.status_code == 413
    assert parser_calls == []  # the size gate fired before the parser

    def decide(sample: list[int]) -> tuple[str, ...]:  # already parsed by an adapter
        return evaluate(
            policy, ctx("POST", "/echo", sample=sample, content_type="application/json")
        ).rule_ids

    assert_linear(decide, lambda n: [0] * n, 5_000, "array sample")  # counted, not timed
    d = evaluate(
        policy, ctx("POST", "/echo", sample=[0] * 1_000_000, content_type="application/json")
    )
    assert d.rule_ids == ("limit.array.max",) and d.status_code == 403


def test_array_limit_from_raw(policy, ctx: Callable[..., RequestContext]) -> None:
    ok = json.dumps({"a": list(range(1000))})
    over = json.dumps({"a": [{"b": list(range(1001))}]})
    assert evaluate(policy, ctx("POST", "/echo", raw=ok, content_type="application/json")).allowed
    d = evaluate(policy, ctx("POST", "/echo", raw=over, content_type="application/json"))
    assert d.rule_ids == ("limit.array.max",)


def test_form_repeats_count_as_an_array(policy, ctx: Callable[..., RequestContext]) -> None:
    raw = "&".join(["x=1"] * 1001)
    d = evaluate(
        policy, ctx("POST", "/echo", raw=raw, content_type="application/x-www-form-urlencoded")
    )
    assert d.rule_ids == ("limit.array.max",)


def test_binary_and_invalid_utf8_bodies(policy, ctx: Callable[..., RequestContext]) -> None:
    blob = bytes(range(256)) * 100
    d = evaluate(policy, ctx("POST", "/echo", raw=blob, content_type="application/octet-stream"))
    assert d.action == "ALLOW"  # opaque: only size limits apply
    d = evaluate(policy, ctx("POST", "/echo", raw=blob, content_type="application/json"))
    assert d.rule_ids == ("request.body.malformed",) and d.status_code == 400
    d = evaluate(
        policy,
        ctx("POST", "/echo", raw=b"a=%FF%FE", content_type="application/x-www-form-urlencoded"),
    )
    assert d.rule_ids == ("request.body.malformed",)


def test_body_size_uses_declared_length_for_partial_bodies() -> None:
    full = Body(True, 10, raw=b"0123456789")
    assert body_size(full, {}) == 10
    partial = Body(True, 10, raw=b"0123456789", partial=True)
    assert body_size(partial, {"content-length": "5000000"}) == 5_000_000
    assert body_size(partial, {"content-length": "nonsense"}) == 10
    # Unicode digits pass str.isdigit() but int() refuses some ("²"): not a length.
    assert body_size(partial, {"content-length": "²"}) == 10
    assert body_size(partial, {"content-length": "٣٠٠"}) == 10
    lying = Body(True, 1, raw=b"0123456789")
    assert body_size(lying, {}) == 10


def test_oversize_by_declared_size(policy, ctx: Callable[..., RequestContext]) -> None:
    d = evaluate(
        policy,
        ctx(
            "POST",
            "/echo",
            raw=b"{}",
            content_type="application/json",
            partial=True,
            size_bytes=2_000_000,
        ),
    )
    assert d.rule_ids == ("limit.body.max",) and d.status_code == 413


def test_truncated_json_within_the_limit_is_malformed_and_says_why(
    policy, ctx: Callable[..., RequestContext]
) -> None:
    d = evaluate(
        policy,
        ctx(
            "POST",
            "/echo",
            raw=b'{"a": "xxxx',
            content_type="application/json",
            partial=True,
            size_bytes=11,
            headers={"content-length": "4000"},
        ),
    )
    assert d.rule_ids == ("request.body.malformed",) and d.status_code == 400
    assert "truncated by the proxy" in d.rule_hits[0].message


def test_measure() -> None:
    assert measure({"a": [1, {"b": [1, 2, 3]}]}, 32, 1000) == (4, 3)
    assert measure("x", 32, 1000) == (0, 0)
    assert Limits().max_body_bytes == 1_048_576


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 40 + b'"' + b'\\"' * 400_000,  # escaped quotes: no quadratic regex restarts
        b"[" + b'"[",' * 200_000 + b"1]" + b"[" * 40,
        b"[" * 40 + b'"' + b"[" * 900_000,  # unterminated string
        b"[" * 40 + b'"' * 900_000,
        b"[" * 40 + b'"' + b"\\" * 900_000,
    ],
)
def test_depth_prescan_decides_hostile_strings(raw: bytes, parser_calls: list[int]) -> None:
    """Not timed: the pre-scan's regexes are linear by their shapes (the next two tests)."""
    parsed = parse(raw)
    assert parsed.kind in (b.TOO_DEEP, b.MALFORMED)
    assert parser_calls == [] or parsed.kind == b.MALFORMED


def _repeats(items: list, found: list[str]) -> list[str]:  # type: ignore[type-arg]
    """The opcodes of every unbounded repeat in a parsed regex, nested ones too."""
    for op, av in items:
        name = str(op)
        if name.endswith("REPEAT"):
            if av[1] == MAXREPEAT:
                found.append(name)
            _repeats(list(av[2]), found)
        elif name == "SUBPATTERN":
            _repeats(list(av[3]), found)
        elif name == "BRANCH":
            for alt in av[1]:
                _repeats(list(alt), found)
    return found


def test_prescan_string_regex_never_restarts_inside_a_string() -> None:
    """``_STRINGS`` is linear: attempts start only at a quote, and such an attempt never fails.

    An attempt at any other byte fails on its first byte. One at a quote reads on with
    possessive unbounded repeats only (never giving a byte back, so no backtracking) and accepts the end
    of input, so it succeeds, and ``sub`` resumes after it: no byte is read by two attempts.
    """
    items = parse_regex(_base._STRINGS)
    assert items[0] == (items[0][0], ord('"')) and str(items[0][0]) == "LITERAL"
    found = _repeats(items, [])
    assert found and all(r == "POSSESSIVE_REPEAT" for r in found), found


@given(st.binary(max_size=64))
def test_a_prescan_string_attempt_at_a_quote_always_succeeds(tail: bytes) -> None:
    assert _base._STRINGS.match(b'"' + tail) is not None


def test_prescan_bracket_regex_is_one_character_class() -> None:
    """``_NOT_BRACKET`` is one class repeated: an attempt takes its whole run or fails at once."""
    ((op, (low, _high, body)),) = parse_regex(_base._NOT_BRACKET)
    assert str(op) == "MAX_REPEAT" and low == 1
    ((kind, _chars),) = list(body)
    assert str(kind) == "IN"


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/octet-stream"])
def test_json_looking_bodies_are_checked_whatever_the_label(
    content_type: str | None, policy, ctx: Callable[..., RequestContext]
) -> None:
    raw = b' \n{"__proto__": {"isAdmin": true}}'
    parsed = parse(raw, content_type or "")
    assert parsed.kind == b.JSON and parsed.sniffed
    d = evaluate(policy, ctx("POST", "/echo", raw=raw, content_type=content_type))
    assert d.rule_ids == ("vulnerability.prototypePollution",)


def test_sniffing_never_makes_a_body_malformed(policy, ctx) -> None:
    for raw in (b"{not json", b"[1,2"):
        parsed = parse(raw, "text/plain")
        assert parsed.kind == b.OPAQUE and parsed.inspect == raw.decode()  # read as text
        assert evaluate(policy, ctx("POST", "/echo", raw=raw, content_type="text/plain")).allowed
    parsed = parse(b'{"a":1,"a":2}', "text/plain")  # lenient: every value inspected
    assert parsed.kind == b.JSON and parsed.sniffed and parsed.inspect == {"a": [1, 2]}
    deep = b"[" * 100 + b"]" * 100
    assert parse(deep, "text/plain").kind == b.TOO_DEEP


def test_repeated_content_types_any_json_counts(policy, ctx) -> None:
    raw = b'{"__proto__": 1}'
    for ct in ("application/json, text/plain", "text/plain,application/json; charset=utf-8"):
        assert parse(raw, ct).kind == b.JSON and not parse(raw, ct).sniffed
    form = parse(b"a=1", "text/plain, application/x-www-form-urlencoded")
    assert form.kind == b.FORM
    d = evaluate(
        policy, ctx("POST", "/echo", raw=b"{oops", content_type="text/plain, application/json")
    )
    assert d.rule_ids == ("request.body.malformed",)
