"""Schema regexes run on RE2: hostile patterns are accepted and still decided in linear time.

D7/D7b: ``pattern``/``patternProperties`` regexes come from the policy and run on attacker
input. Python's backtracking ``re`` takes exponential or polynomial time on the shapes below;
RE2 does not backtrack, so the loader accepts them and a hostile value costs milliseconds.
Not timed: the tests prove every search of a hostile pattern runs on RE2 and none on ``re``
(``_bounded.on_re2``); ``bench/hostile_bench.py`` prints the figures.
"""

from __future__ import annotations

import re

import pytest
from _bounded import on_re2

from extauthz.engine.contract import SchemaProblem, check_schema, compile_contract
from extauthz.engine.schema_regex import UnsupportedPattern, compile_pattern

# (pattern, a value that makes Python's ``re`` blow up on it, whether the pattern matches it)
HOSTILE = [
    (r"^(a+)+$", "a" * 100_000 + "!", False),
    (r"^(a|a)*$", "a" * 100_000 + "!", False),
    (r"^([a-z0-9]+)*@x$", "a" * 100_000 + "!", False),
    (r"(a*)*b", "a" * 100_000, False),
    (r"^(a+b?)+$", "a" * 100_000 + "!", False),
    (r"((ab)*)*c", "ab" * 50_000, False),
    (r"^(\d+\s?)+$", "1" * 100_000 + "!", False),
    (r"^(x+|y)*$", "x" * 100_000 + "!", False),
    (r"(.*a){10}", "a" * 100_000, True),
    (r"(?i)^([A-Z]+a)*$", "a" * 100_000 + "!", False),
    (r"^(a|aa)+$", "a" * 100_000 + "!", False),
    (r"^a*a*a*$", "a" * 100_000 + "!", False),
    (r"^.*.*.*=.*$", "x" * 100_000, False),
    (r"[a-z]+@", "a" * 100_000, False),
    (r"\s*#", " " * 100_000, False),
]
BENIGN = ["", "a", "aa", "aaa!", "ab", "abab", "abc", "x", "xy", "a@x", "1 2 3", "x=1", "AAAa", "#"]


@pytest.mark.parametrize(("pattern", "hostile", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("engine", ["fastjsonschema", "jsonschema"])
def test_hostile_pattern_is_accepted_and_decided_on_re2(
    pattern: str, hostile: str, expected: bool, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"type": "string", "pattern": pattern}},
        "patternProperties": {pattern: {"type": "integer"}},
    }
    contract = compile_contract(schema, reject_unknown=True, source="<inline>", engine=engine)
    assert contract.engine == engine
    with on_re2(monkeypatch) as seen:  # each of the three lookups searches on RE2 once more
        for value in (hostile, hostile[-20_000:]):
            before = seen.linear[pattern]
            as_value = contract.validate({"v": value})
            seen.assert_only_on_re2(pattern, before + 1)
            before = seen.linear[pattern]
            as_key = contract.validate({value: "not an integer"})
            seen.assert_only_on_re2(pattern, before + 1)
            before = seen.linear[pattern]
            extra = contract.unknown is not None and contract.unknown.child(value)
            seen.assert_only_on_re2(pattern, before + 1)
            assert (as_value is None) is expected, as_value
            assert (as_key is not None) is expected, as_key  # a matching key must be an integer
            assert bool(extra) is expected


def test_the_re2_check_sees_python_re(monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_re2`` would notice a pattern sent to Python's ``re`` instead."""
    with on_re2(monkeypatch) as seen:
        assert re.search(r"^(a+)+$", "aaa")
    with pytest.raises(AssertionError):
        seen.assert_only_on_re2(r"^(a+)+$", 0)
    with pytest.raises(AssertionError):
        seen.assert_only_on_re2(r"^never searched$")


@pytest.mark.parametrize(("pattern", "hostile", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_results_match_python_re_on_small_benign_inputs(
    pattern: str, hostile: str, expected: bool
) -> None:
    compiled = compile_pattern(pattern)
    for text in [*BENIGN, hostile[-12:]]:
        assert compiled.search(text) is (re.search(pattern, text) is not None), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$",
        r"^\d+(\.\d+)*$",
        r"^(foo|bar)+$",
        r"^[^@\s]+@[^@\s]+$",
        r"^(?:[a-z0-9-]+\.)+[a-z]{2,}$",
        r"^x-",
        r"^(https?)://",
    ],
)
def test_ordinary_patterns_agree_with_python_re(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    for text in [*BENIGN, "ABCD-1234-EFGH-5678", "1.2.3", "foobar", "a@b", "a.example.com"]:
        assert compiled.search(text) is (re.search(pattern, text) is not None), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [r"^(?=.*\d)\w+$", r"(?!admin)^\w+$", r"(?<=x)y", r"(?<!x)y", r"^(a)\1$", r"^a++$", "(?>a+)"],
)
def test_patterns_re2_cannot_run_are_refused_with_the_reason(pattern: str) -> None:
    with pytest.raises(UnsupportedPattern, match="linear-time regex engine does not support"):
        compile_pattern(pattern)
    with pytest.raises(SchemaProblem) as info:
        check_schema({"properties": {"a": {"$defs": {"b": {"pattern": pattern}}}}})
    message = str(info.value)
    assert "at '/properties/a/$defs/b/pattern'" in message
    assert "(lookaround/backreference)" in message and repr(pattern) in message


def test_schema_check_looks_at_pattern_and_pattern_properties_everywhere() -> None:
    with pytest.raises(SchemaProblem, match="at '/patternProperties/\\(\\?=a\\)'"):
        check_schema({"patternProperties": {"(?=a)": {}}})
    with pytest.raises(SchemaProblem, match="at '/\\$defs/x/propertyNames/pattern'"):
        check_schema({"$defs": {"x": {"propertyNames": {"pattern": "(?<=a)b"}}}})
    with pytest.raises(SchemaProblem, match="at '/prefixItems/1/pattern'"):
        check_schema({"prefixItems": [{}, {"pattern": "(a)\\1"}]})
    check_schema({"properties": {"pattern": {"type": "string", "pattern": "^[a-z]+$"}}})


def test_dollar_and_classes_follow_ecma_262_not_python() -> None:
    # JSON Schema patterns are ECMA-262: "$" is end of input (Python's also matches before a
    # final newline), \d is ASCII only (Python's str patterns match any Unicode digit).
    assert not compile_pattern(r"^a$").search("a\n")
    assert re.search(r"^a$", "a\n")
    assert not compile_pattern(r"^\d+$").search("٣")
    assert compile_pattern("^é+$").search("éé")


def test_lone_surrogates_in_input_do_not_crash() -> None:
    contract = compile_contract(
        {"patternProperties": {"^x": {}}, "properties": {"v": {"pattern": "^x"}}},
        reject_unknown=True,
        source="<inline>",
    )
    assert contract.validate({"v": "\ud800x"}) is not None
    assert contract.validate({"v": "x\ud800"}) is None
    assert contract.unknown is not None and contract.unknown.child("\ud800") is None


@pytest.mark.parametrize("engine", ["fastjsonschema", "jsonschema"])
def test_email_format_is_linear_and_unchanged_on_ordinary_addresses(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = compile_contract(
        {"properties": {"e": {"type": "string", "format": "email"}}},
        reject_unknown=False,
        source="<inline>",
        engine=engine,
    )
    assert contract.validate({"e": "user.name@example.com"}) is None
    assert contract.validate({"e": "no-at-sign"}) is not None
    if engine == "fastjsonschema":  # jsonschema only asks for an "@"
        for bad in ("a..b@example.com", "a.@example.com", ".a@example.com", "a@example"):
            assert contract.validate({"e": bad}) is not None, bad
    with on_re2(monkeypatch) as seen:
        refused = [
            contract.validate({"e": hostile}) is not None
            for hostile in ("." * 100_000, "a" + ".." * 50_000 + "@x.y", "a." * 50_000)
        ]
    assert refused == [True, engine == "fastjsonschema", True]
    if engine == "fastjsonschema":  # its lookaround email regex is replaced by an RE2 one
        assert sum(seen.linear.values()) >= 3, seen.linear
    assert not seen.python, seen.python  # jsonschema's email check is a plain "@" test


def test_ecma_unicode_escapes_are_understood() -> None:
    # JSON Schema patterns often spell characters as ECMA-262 \uXXXX, which RE2 does not know.
    ascii_only = compile_pattern(r"^[\u0000-\u007f]*$")
    assert ascii_only.search("plain ascii") and not ascii_only.search("é")
    assert compile_pattern(r"[\s\u00a0]").search("\xa0")
    escaped = compile_pattern(r"^\\u0041$")  # an escaped backslash, then a literal "u0041"
    assert escaped.search("\\u0041") and not escaped.search("A")
