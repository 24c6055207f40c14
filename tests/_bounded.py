"""Checks that hostile input costs bounded work, without reading a clock.

Wall-clock bounds ("took < 1 s") fail on a loaded machine and pass on a fast one whatever the
code does, so the tests prove bounds by construction instead:

- ``work``/``assert_linear``: count the Python lines run and the calls made (into C functions
  too) and check that 4x the input costs at most ~4x the steps; a quadratic walk costs 16x.
  A call into C (a regex search, ``json.loads``) counts once whatever its input, which is why
  regexes get their own check:
- ``check_regex_shape``: a ``re`` pattern searched over attacker input has no nested unbounded
  repeats and no unbounded run that could start a match (no two start positions rescan a run);
- ``on_re2``: schema regexes must run on RE2 (linear time by design, no backtracking): every
  search of a pattern goes through ``schema_regex.LinearPattern`` and Python's ``re`` never
  compiles it.

Figures people care about (how long a hostile input takes) live in ``bench/hostile_bench.py``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pytest

# --- counted work -------------------------------------------------------------------------------


def work(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """``fn(*args, **kwargs)`` and the work it did: Python lines run plus calls made (C too)."""
    steps = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal steps
        if event == "call" or event == "c_call":
            steps += 1

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
        return trace

    previous = sys.getprofile(), sys.gettrace()
    sys.setprofile(profile)
    sys.settrace(trace)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.settrace(previous[1])
        sys.setprofile(previous[0])
    return result, steps


def assert_linear(
    fn: Callable[[Any], Any], make: Callable[[int], Any], n: int, what: str = ""
) -> tuple[int, int]:
    """``fn(make(4 * n))`` costs at most ~4x the steps of ``fn(make(n))`` (quadratic: 16x).

    The slack (5x plus 200 steps) absorbs fixed costs and caches warming up; the first run is
    a warm-up so that imports and compiled-once objects do not count.
    """
    fn(make(n))
    _, small = work(fn, make(n))
    _, big = work(fn, make(4 * n))
    assert big <= 5 * small + 200, f"{what}: {small} steps for n={n}, {big} for 4n (not linear)"
    return small, big


# --- regex shapes -------------------------------------------------------------------------------

MAX_BOUND = 256  # the largest bounded repeat a searched regex may use


def _first_chars(items: list[tuple[Any, Any]]) -> set[int] | None:
    """The code points a pattern can start with (None: anything, or cannot tell)."""
    for op, av in items:
        name = str(op)
        if name == "LITERAL":
            return {av}
        if name == "IN":
            chars: set[int] = set()
            for kind, val in av:
                if str(kind) == "LITERAL":
                    chars.add(val)
                elif str(kind) == "RANGE":
                    chars.update(range(val[0], val[1] + 1))
                else:
                    return None
            return chars
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # zero width
        if name == "SUBPATTERN":
            return _first_chars(list(av[3]))
        if name == "BRANCH":
            union: set[int] = set()
            for alt in av[1]:
                got = _first_chars(list(alt))
                if got is None:
                    return None
                union |= got
            return union
        return None
    return None


def _check_shape(items: Any, inside_repeat: int, first: set[int] | None, where: str) -> None:
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _low, high, body = av
            if high == sre_parse.MAXREPEAT:
                # Unbounded: one character class, not nested, and unable to start a match, so
                # that no two start positions scan the same run.
                assert not inside_repeat, f"{where}: unbounded repeat inside a repeat"
                body = list(body)
                assert len(body) == 1 and str(body[0][0]) in ("IN", "LITERAL", "NOT_LITERAL"), (
                    f"{where}: unbounded repeat of more than one character class"
                )
                chars = _first_chars(body)
                assert first is not None and chars is not None and not (chars & first), (
                    f"{where}: an unbounded repeat can overlap the match's first character"
                )
            else:
                assert high <= MAX_BOUND, f"{where}: repeat bound {high} > {MAX_BOUND}"
                assert inside_repeat * high <= 40 * MAX_BOUND, f"{where}: nested bounds too large"
                _check_shape(body, max(inside_repeat, 1) * high, first, where)
        elif name == "SUBPATTERN":
            _check_shape(av[3], inside_repeat, first, where)
        elif name == "BRANCH":
            for alt in av[1]:
                _check_shape(alt, inside_repeat, first, where)
        elif name in ("ASSERT", "ASSERT_NOT"):
            _check_shape(av[1], inside_repeat, first, where)
        elif name == "GROUPREF_EXISTS":
            raise AssertionError(f"{where}: conditional groups")


def check_regex_shape(regex: re.Pattern[Any], where: str) -> None:
    """Fail unless ``regex`` searched anywhere in a string costs time linear in it."""
    parsed = list(sre_parse.parse(regex.pattern, regex.flags))
    _check_shape(parsed, 0, _first_chars(parsed), where)


def parse_regex(regex: re.Pattern[Any]) -> list[tuple[Any, Any]]:
    """``regex`` as ``re``'s parser sees it: (opcode, argument) pairs."""
    return list(sre_parse.parse(regex.pattern, regex.flags))


# --- schema regexes on RE2 ----------------------------------------------------------------------


class Re2Use:
    """What ``on_re2`` saw: searches per pattern on RE2, patterns Python's ``re`` compiled."""

    def __init__(self) -> None:
        self.linear: Counter[str] = Counter()
        self.python: list[str] = []

    def assert_only_on_re2(self, pattern: str, at_least: int = 1) -> None:
        assert self.linear[pattern] >= at_least, (pattern, dict(self.linear))
        assert pattern not in self.python, f"{pattern!r} was compiled by Python's re"


@contextmanager
def on_re2(monkeypatch: pytest.MonkeyPatch, seen: Re2Use | None = None) -> Iterator[Re2Use]:
    """Count RE2 searches per pattern and record every pattern Python's ``re`` compiles.

    Anything that reaches Python's ``re`` (``re.compile``, ``re.search``, a cached pattern)
    goes through ``re._compile``. A pattern compiled by ``re`` at load and kept would not, so
    callers open this around the decision only and check that each lookup of the pattern
    counted one more RE2 search (fastjsonschema's generated code compiles its patterns with
    ``re`` at load; the engine swaps them for RE2 ones before any input arrives).
    """
    from extauthz.engine import schema_regex

    seen = Re2Use() if seen is None else seen
    search, match = schema_regex.LinearPattern.search, schema_regex.LinearPattern.match
    compile_ = re._compile  # type: ignore[attr-defined]

    def counted_search(self: Any, text: str) -> bool:
        seen.linear[self.pattern] += 1
        return search(self, text)

    def counted_match(self: Any, text: str) -> bool:
        seen.linear[self.pattern] += 1
        return match(self, text)

    def recorded_compile(pattern: Any, flags: Any = 0) -> Any:
        if isinstance(pattern, str):
            seen.python.append(pattern)
        return compile_(pattern, flags)

    with monkeypatch.context() as m:
        m.setattr(schema_regex.LinearPattern, "search", counted_search)
        m.setattr(schema_regex.LinearPattern, "match", counted_match)
        m.setattr(re, "_compile", recorded_compile)
        yield seen
