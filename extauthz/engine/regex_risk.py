"""Refusing JSON Schema regexes that can backtrack catastrophically, at load.

Schema ``pattern``/``patternProperties`` regexes run on attacker input with Python's
backtracking ``re``: ``^(a+)+$`` costs seconds on a 25-character value. Rather than time out at
request time, the loader refuses the two shapes behind exponential blow-ups:

- a **nested quantifier**: an unbounded (or > 8) repeat around a variable-length repeat, as in
  ``(a+)+`` or ``([a-z0-9]+)*@``;
- an **ambiguous alternation** under an unbounded repeat: alternatives that can start with the
  same character (or both match nothing), as in ``(a|a)*`` or ``(x+|y)*``.

A nested quantifier is accepted when every iteration of the outer repeat must match a
delimiter that nothing else in it can (``^\\d+(\\.\\d+)*$``, ``(\\s*,\\s*[a-z]+)*``).
Possessive quantifiers (``*+``, ``++``) and atomic groups (``(?>...)``) never backtrack and are
always accepted: they are the suggested rewrite. The analysis is conservative: it may refuse a
pattern that is in fact safe.
"""

from __future__ import annotations

import re
import string
from typing import Any

try:  # Python >= 3.11
    import re._constants as _c
    import re._parser as _p
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

ANY = None  # a charset that may contain any character
_NON_ASCII = -1
_DIGITS = frozenset(map(ord, string.digits))
_SPACE = frozenset(map(ord, " \t\n\r\f\v"))
_WORD = frozenset(map(ord, string.ascii_letters + string.digits + "_")) | {_NON_ASCII}
_CATEGORIES = {
    _c.CATEGORY_DIGIT: _DIGITS,
    _c.CATEGORY_SPACE: _SPACE | {_NON_ASCII},
    _c.CATEGORY_WORD: _WORD,
}
_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT)
_OUTER_LIMIT = 8

Charset = frozenset[int] | None


def pattern_risk(pattern: str) -> str | None:
    """Why ``pattern`` may backtrack catastrophically (or does not compile), or ``None``."""
    try:
        re.compile(pattern)
        tree = _p.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    ignore_case = bool(tree.state.flags & re.IGNORECASE)
    try:
        reason = _scan(list(tree), ignore_case)
    except RecursionError:
        return f"regular expression {pattern!r} is nested too deeply"
    if reason is None:
        return None
    return (
        f"pattern {pattern!r} can take exponential time on hostile input ({reason}); "
        "use a possessive quantifier (a++, (...)*+) or an atomic group (?>...)"
    )


def _scan(items: list[Any], ic: bool) -> str | None:
    for op, av in items:
        if op in _REPEATS:
            _lo, hi, body = av
            body = list(body)
            if hi == _c.MAXREPEAT or hi > _OUTER_LIMIT:
                reason = _outer_risk(body, hi == _c.MAXREPEAT, ic)
                if reason is not None:
                    return reason
            reason = _scan(body, ic)
        elif op == _c.SUBPATTERN:
            reason = _scan(list(av[-1]), ic)
        elif op == _c.BRANCH:
            reason = next((r for alt in av[1] if (r := _scan(list(alt), ic)) is not None), None)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            reason = _scan(list(av[1]), ic)
        else:  # literals, classes, anchors; POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack
            reason = None
        if reason is not None:
            return reason
    return None


def _outer_risk(body: list[Any], unbounded: bool, ic: bool) -> str | None:
    if unbounded:
        # Ambiguity inside one iteration multiplies across iterations, delimiters or not.
        ambiguous = _ambiguous_branch(body, ic)
        if ambiguous is not None:
            return ambiguous
    if not _variable_repeats(body):
        return None
    for delimiter in _mandatory(body, ic):
        others = _charset_of(body, ic, exclude=delimiter)
        if delimiter[1] is not ANY and others is not ANY and not (delimiter[1] & others):
            return None  # every iteration needs a character nothing else can match
    return "a repeated group contains a variable-length repeat"


def _variable_repeats(items: list[Any]) -> bool:
    """True when ``items`` holds a repeat whose count varies (at any depth)."""
    for op, av in items:
        if op in _REPEATS:
            lo, hi, body = av
            children = [list(body)]
            if lo != hi:
                return True
        elif op == _c.SUBPATTERN:
            children = [list(av[-1])]
        elif op == _c.BRANCH:
            children = [list(alt) for alt in av[1]]
        else:
            continue
        if any(_variable_repeats(child) for child in children):
            return True
    return False


def _ambiguous_branch(items: list[Any], ic: bool) -> str | None:
    for op, av in items:
        if op == _c.BRANCH:
            if sum(1 for alt in av[1] if not list(alt)) > 1:  # "(a|a)" parses as "a(|)"
                return "alternatives under a repeat can match the same text"
            firsts = [_first(list(alt), ic) for alt in av[1] if list(alt)]
            for i, a in enumerate(firsts):
                for b in firsts[i + 1 :]:
                    if a is ANY or b is ANY or a & b:
                        return "alternatives under a repeat can match the same text"
        elif op == _c.SUBPATTERN:
            found = _ambiguous_branch(list(av[-1]), ic)
            if found is not None:
                return found
    return None


def _first(items: list[Any], ic: bool) -> Charset:
    """Characters the sequence can start with (ANY when unsure or when it can be empty)."""
    for op, av in items:
        if op == _c.AT:
            continue
        if op == _c.SUBPATTERN:
            return _first(list(av[-1]), ic)
        if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
            lo, _hi, body = av
            return _first(list(body), ic) if lo > 0 else ANY
        return _element_charset(op, av, ic)
    return ANY


def _mandatory(items: list[Any], ic: bool) -> list[tuple[int, Charset]]:
    """Top-level single-character elements every iteration must match, with their charsets."""
    out: list[tuple[int, Charset]] = []
    flat: list[Any] = []
    for op, av in items:
        if op == _c.SUBPATTERN:
            flat.extend(av[-1])
        else:
            flat.append((op, av))
    for index, (op, av) in enumerate(flat):
        if op in (_c.LITERAL, _c.IN, _c.NOT_LITERAL):
            out.append((index, _element_charset(op, av, ic)))
    return out


def _charset_of(
    items: list[Any],
    ic: bool,
    *,
    exclude: tuple[int, Charset] | None = None,
) -> Charset:
    """Every character any part of ``items`` can match (top-level ``exclude`` left out)."""
    flat: list[Any] = []
    for op, av in items:
        if op == _c.SUBPATTERN:
            flat.extend(av[-1])
        else:
            flat.append((op, av))
    result: set[int] = set()
    for index, (op, av) in enumerate(flat):
        if exclude is not None and index == exclude[0]:
            continue
        part = _deep_charset(op, av, ic)
        if part is ANY:
            return ANY
        result |= part
    return frozenset(result)


def _deep_charset(op: Any, av: Any, ic: bool) -> Charset:
    if op == _c.AT:
        return frozenset()
    if op in _REPEATS or op == _c.POSSESSIVE_REPEAT:
        return _charset_of(list(av[2]), ic)
    if op in (_c.SUBPATTERN, _c.ATOMIC_GROUP):
        return _charset_of(list(av[-1] if op == _c.SUBPATTERN else av), ic)
    if op == _c.BRANCH:
        out: set[int] = set()
        for alt in av[1]:
            part = _charset_of(list(alt), ic)
            if part is ANY:
                return ANY
            out |= part
        return frozenset(out)
    return _element_charset(op, av, ic)


def _element_charset(op: Any, av: Any, ic: bool) -> Charset:
    if op == _c.LITERAL:
        return _fold(frozenset({av}), ic)
    if op == _c.IN:
        out: set[int] = set()
        for kind, value in av:
            if kind == _c.LITERAL:
                out.add(value)
            elif kind == _c.RANGE:
                lo, hi = value
                if hi - lo > 512:
                    return ANY
                out.update(range(lo, hi + 1))
            elif kind == _c.CATEGORY and value in _CATEGORIES:
                out |= _CATEGORIES[value]
            else:  # NEGATE, other categories
                return ANY
        if any(c > 127 for c in out):
            out.add(_NON_ASCII)
        return _fold(frozenset(out), ic)
    return ANY


def _fold(chars: frozenset[int], ic: bool) -> frozenset[int]:
    if not ic:
        return chars
    out = set(chars)
    for c in chars:
        if 0 <= c < 0x110000:
            ch = chr(c)
            out.add(ord(ch.lower()[0]))
            out.add(ord(ch.upper()[0]))
    return frozenset(out)
