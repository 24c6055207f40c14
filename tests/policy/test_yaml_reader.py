"""The fast YAML reader (libyaml events) against the exact one (PyYAML's Python loader).

``_fast_yaml`` either returns exactly what ``_NoAliasLoader`` returns (same types: ``1`` is not
``True``, ``1.0`` is not ``1``) or gives up; it never returns a document the exact reader
refuses. ``load_yaml`` (what policies and OpenAPI documents go through) then answers exactly
as the exact reader, refusals word for word. A corpus of odd documents and generated ones pin
that, and show that ordinary documents do take the fast way.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.policy import _loader
from extauthz.policy._loader import _fast_yaml, _NoAliasLoader, _Slow, load_yaml, parse_document

# Documents ordinary policies and API descriptions are made of: the fast reader must take them.
PLAIN = [
    "",
    "# only a comment\n",
    "a: 1\n",
    "a: 1\nb: [1, 2, {c: d}]\n",
    "policyVersion: '0.1'\nroutes: []\n",
    "- a\n- b\n-\n  - c\n",
    "key: value with spaces and a # not-comment\n",
    "a: &\n",  # '&' followed by a space is not an anchor... the scanner decides (corpus below)
    "text: |\n  line 1\n  line 2\n",
    "text: |-\n  kept\n\n",
    "text: |+\n  kept\n\n",
    "text: >\n  folded\n  lines\n\n  para\n",
    "text: >2\n   indented\n",
    'q: "esc \\x41 \\u263A \\U0001F600 \\/ \\t \\\\ \\" \\0 \\a \\e \\N \\_ \\L \\P"\n',
    "q: 'it''s'\n",
    'q: "folded\n  across lines "\n',
    "plain: multi\n  line\n  plain\n",
    "bools: [yes, no, on, off, y, n, true, False, TRUE, Yes, NO]\n",
    "ints: [0, -1, +3, 0x1F, 0o17, 017, 0b101, 1_000, 190:20:30, 0x_1F]\n",
    "floats: [1.0, -1.5e3, 1e3, 1.0e+3, .inf, -.Inf, .NaN, 6.8523015e+5, 685_230.15, 190:20:30.15]\n",
    "nulls: [~, null, Null, NULL, ]\n",
    "empty: \nalso: ''\n",
    "dates: [2002-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5, 2001-12-15T02:59:43.1Z]\n",
    "flow: {a: 1, b: [x, y, ], c: {}}\n",
    "flow_keys: {a, b}\n",
    "pair: [a: 1, b: 2]\n",
    "explicit: {? a : 1}\n",
    "? a\n: 1\n",
    "quoted keys: {'1': a, \"true\": b, '~': c, '<<': d}\n",
    "unicode: \u00e9\u4e2d\u6587 \u2603\n",
    "\ufeffbom: 1\n",
    "crlf: 1\r\nnext: 2\r\n",
    "big: 123456789012345678901234567890\nhuge: 1e400\n",
    "---\na: 1\n...\n",
    "--- just a scalar\n",
    "%YAML 1.1\n---\na: 1\n",
    "a:\n  b:\n    c:\n      d: [1, [2, [3, {e: f}]]]\n",
    "description: Use *emphasis* & `code`, [a link](https://x.example/a?b=c&d=e)\n",
    "star: '*not an alias*'\namp: \"&not an anchor\"\n",
    "colon: a:b\nurl: http://x:80/y\n",
    "question: a?b\nquery: /x?y=1\n",
    "hash: a#b\n",
    'tab: "in\tquotes"\nblock: |\n  in\tblock\n',
    "seq:\n- a\n-   b\n- - c\n  - d\n",
    "nested:\n  - {a: [1, 2]}\n  - [3, {b: 4}]\n",
    "minus: -1\nplus: +1\ndot: .5\nexp: 1e-3\n",
    "ver: 3.0.3\nopenapi: 3.1.0\ncode: 0777\nsha: 1e10a\n",
    "long: " + "x" * 2000 + "\n",
]

# Documents the exact reader refuses, or that need its special handling.
ODD = [
    "a: &x 1\nb: *x\n",
    "a: &x 1\n",
    "&a [1]\n",
    "a: *undefined\n",
    "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n",
    "d:\n  <<: {x: 1}\n  y: 2\n",
    "d:\n  <<: [{x: 1}, {z: 3}]\n",
    "d:\n  <<: 5\n",
    "v: =\n",
    "1: a\n",
    "on: a\n",
    "~: a\n",
    "1.5: a\n",
    "2020-01-01: a\n",
    "? [a]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "a: 1\na: 2\n",
    "a: 1\n'a': 2\n",
    "x: {a: 1, a: 2}\n",
    "x:\n  - {b: 1, c: 2, b: 3}\n",
    "1: a\n'1': b\n",
    "s: !!str 1\n",
    "i: !!int '3'\n",
    "b: !!binary aGVsbG8=\n",
    "set: !!set {a, b}\n",
    "om: !!omap [a: 1, b: 2]\n",
    "pairs: !!pairs [a: 1, a: 2]\n",
    "c: !custom x\n",
    "p: !!python/object:os.system x\n",
    "n: ! 12\n",
    "m: !!map {a: 1}\n",
    "sq: !!seq [1]\n",
    "ts: !!timestamp 2001-12-14\n",
    "f: !!float 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a\n---\nb\n",
    "---\n---\n",
    "%YAML 1.2\n---\na: 1\n",
    "%YAML 2.0\n---\na: 1\n",
    "%FOO bar\n---\na: 1\n",
    "a:\n\t- b\n",
    "a: 'unclosed\n",
    'a: "unclosed\n',
    "a: b: c\n",
    "- a\nb: c\n",
    "a:\n  b: 1\n c: 2\n",
    'a: "\\q"\n',
    "a: \x07\n",
    "a: \x00\n",
    "a: \x1b\n",
    "[1, 2\n",
    "{a: 1\n",
    "@foo: 1\n",
    "`x`: 1\n",
    "a: @b\n",
    "%\n",
    "? " + "k" * 1100 + "\n: v\n",
    "k" * 1100 + ": v\n",
    "[" * 150 + "]" * 150 + "\n",
    "[" * 400 + "]" * 400 + "\n",
    "".join("  " * i + "a:\n" for i in range(120)) + "  " * 120 + "b\n",
    "a: |\n  x\n b\n",
    "a: >\n x\n  y\n z\n",
    "a: [b, c]]\n",
    "a: {b: c}}\n",
    "- - - - a\n  - b\n",
    "a:\n- b\n  c: d\n",
    "'a': 1\n\"a\": 2\n",
    "\u0085a: 1\n",
    "a: 1\u2028b: 2\n",
    "a: 1\rb: 2\n",
    "a: \ud7ff\ue000\ufffd\n",
    "a: \ufffe\n",
    "key: [a, b]: c\n",
    "a: 'x' y\n",
    'a: "x" y\n',
    "- !!str\n",
    "!!null\n",
    "? \n: \n",
    "{? : x}\n",
    "[? a : b]\n",
    "- ? a\n  : b\n",
    "a: |#c\n  x\n",
    "a: |\t\n  x\n",
    "a: | \t\n  x\n",
    "a: >-#\n  x\n",
    "- |2#1:2\n    x\n",
    "{a? \x85b}\n",
    "[a? b]\n",
    "{a\n? b}\n",
    "{a.inf...1_0.inf? \x851_0---\n- }",
    "a: |0\n  x\n",
    "a: |10\n  x\n",
    "a: >-1\n  x\n",
    "a: ---\n",
    "--- |\n  block\n...\n--- second\n",
    "a: 1 # c\n#\n  # c\nb: 2\n",
    "...\n",
    "a:\n  - b\n  -c\n",
    "x: -\ny: - a\n",
    "x: -\n",
    "tabs:\ta\t\n",
    "a: 1\t# c\n",
    "a:\n\tb: 1\n",
    "a: |\n  x\n\ty\n",
    "a: 'x\n\ty'\n",
    'a: "x\n\t y"\n',
    "a: x\ty\n",
    "- a\t\n- b\n",
    "{a:\t1}\n",
    "[a,\tb]\n",
    "a: -.inf\nb: +.inf\nc: .nan\nd: 1__0\ne: 0b\nf: 0x\ng: 1:2:3:4\n",
]


def _outcome(read: Any, text: str) -> tuple[Any, ...]:
    try:
        return ("ok", read(text))
    except RecursionError:
        return ("error", "RecursionError")
    except yaml.YAMLError as exc:
        return ("error", type(exc).__name__, str(exc))


def _same(a: Any, b: Any) -> bool:
    """Equal as documents, types included (``True`` is not ``1``, NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, datetime.datetime):
        return a == b and a.tzinfo == b.tzinfo
    return bool(a == b)


def _exact(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)


def _check(text: str) -> str:
    """The invariant for one document; returns "fast" or "slow" (the way it went)."""
    exact = _outcome(_exact, text)
    try:
        fast = _fast_yaml(text)
    except _Slow:
        way = "slow"
    else:
        way = "fast"
        assert exact[0] == "ok", f"fast reader accepted what the exact one refuses: {text!r}"
        assert _same(fast, exact[1]), f"{text!r}: fast {fast!r} != exact {exact[1]!r}"
    public = _outcome(load_yaml, text)
    assert public[0] == exact[0] and (
        _same(public[1], exact[1]) if exact[0] == "ok" else public == exact
    ), text
    return way


@pytest.mark.parametrize("text", PLAIN)
def test_plain_documents_take_the_fast_way_with_the_same_result(text: str) -> None:
    if text.startswith("a: &\n"):
        _check(text)  # whatever libyaml makes of it, the invariant holds
        return
    assert _check(text) == "fast"


@pytest.mark.parametrize("text", ODD)
def test_odd_documents_answer_as_the_exact_reader(text: str) -> None:
    _check(text)


def test_every_refusal_keeps_its_message_and_place() -> None:
    """parse_document's problems are word for word the exact reader's, line and column."""
    for text in ODD:
        fast = parse_document(text.encode("utf-8", "surrogatepass"), "p.yaml")
        _loader.FAST_YAML = False
        try:
            exact = parse_document(text.encode("utf-8", "surrogatepass"), "p.yaml")
        finally:
            _loader.FAST_YAML = True
        assert [str(p) for p in fast[1]] == [str(p) for p in exact[1]], text
        if not exact[1]:
            assert _same(fast[0], exact[0]), text


def test_the_refusals_the_policy_docs_promise() -> None:
    for text, reason in [
        ("a: &x 1\nb: *x\n", "anchors (&name) are not allowed"),
        ("a: 1\nb: *x\n", "aliases (*name) are not allowed"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("on: 1\n", "mapping keys must be strings, got bool True"),
    ]:
        _, problems = parse_document(text.encode(), "p.yaml")
        assert len(problems) == 1 and reason in problems[0].reason, (text, problems)
        assert "line 1" in problems[0].reason or "line 2" in problems[0].reason


def test_the_specgen_documents_take_the_fast_way() -> None:
    from bench.specgen import _NoAliasDumper, stripe_like

    text = yaml.dump(stripe_like(3, operations=40, schemas=40), Dumper=_NoAliasDumper)
    assert _same(_fast_yaml(text), _exact(text))


_PIECES = st.sampled_from(
    [
        "a", "b", "1", "0x1", "on", "~", "-", "- ", ": ", ":", "?", "? ", ",", "[", "]", "{",
        "}", "'", '"', "&x ", "*x", "!!str ", "!t ", "#", "|", ">", "\n", "\n  ", "\n- ",
        "\t", "\t\t", " ", "<<", "=", "---", "...", "%YAML 1.1", "\\", "é", "\x85", "2001-01-01",
        ".inf", "1_0", "1:2",
    ]
)  # fmt: skip


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(_PIECES, max_size=24))
def test_generated_snippets_answer_as_the_exact_reader(pieces: list[str]) -> None:
    _check("".join(pieces))


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    st.sampled_from([None, False, True]),
)
def test_dumped_documents_read_back_the_same_both_ways(doc: Any, flow: bool | None) -> None:
    text = yaml.safe_dump({"doc": doc}, default_flow_style=flow, allow_unicode=True)
    assert _check(text) == "fast"
