"""Route matching on canonical paths: method (or ``*``) plus a path pattern.

Patterns: exact (``/healthz``), templates (``/users/{id}``, a whole segment, captured; or
inside a segment with literal text around and between them, as OpenAPI allows:
``/files/{name}.{ext}``, ``/v1/{name}:cancel``), ``*`` (exactly one segment) and a final
``**`` (zero or more segments). The most specific route wins: comparing segment by segment
from the left, a literal beats a segment with templates and literal text (more literal
characters first), which beats a whole-segment template, which beats ``*``, which beats
``**``; on a tie an exact method beats ``*``. Exact paths sit in a dict; everything else in a
segment trie where each node is visited at most once per lookup, so 1,000 routes cost about
as much as 10.

A segment with templates is matched without regular expressions: its first and last literal
must be its prefix and suffix, and each literal between is found leftmost with at least one
character for each template (``str.find``, linear), which is what a lazy ``([^/]+?)`` regex
would capture (``{name}.{ext}`` on ``a.tar.gz``: ``a`` and ``tar.gz``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_.-]*)\}$")
_TEMPLATE = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_BAD_LITERAL = re.compile(r"[{}*%?#\\\s]")


class PatternError(ValueError):
    """A route pattern that cannot be compiled."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment with templates and literal text: ``{name}.{ext}`` is ``("", ".", "")``."""

    literals: tuple[str, ...]  # one more than the templates; the first and last may be ""

    @property
    def skeleton(self) -> str:
        """The segment with each template as ``{}``: equal skeletons match the same paths."""
        return "{}".join(self.literals)

    @property
    def weight(self) -> int:
        return sum(len(lit) for lit in self.literals)

    def split(self, seg: str) -> list[str] | None:
        """The templates' values in ``seg``, or None when it does not match."""
        lits = self.literals
        first, last = lits[0], lits[-1]
        if not seg.startswith(first) or not seg.endswith(last):
            return None
        end = len(seg) - len(last)
        pos = len(first)
        values: list[str] = []
        for lit in lits[1:-1]:
            # leftmost, leaving one character at least for this template and the next
            at = seg.find(lit, pos + 1, end - 1)
            if at < 0:
                return None
            values.append(seg[pos:at])
            pos = at + len(lit)
        if end - pos < 1:
            return None
        values.append(seg[pos:end])
        return values


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    segments: tuple[str, ...]  # literal text, "{}" template, a Segment's skeleton, "*" or "**"
    params: tuple[tuple[int, str], ...]  # (segment index, parameter name): whole segments
    # (segment index, Segment, its parameter names): segments with literal text around templates
    partial: tuple[tuple[int, Segment, tuple[str, ...]], ...] = ()

    @property
    def exact(self) -> bool:
        return (
            not self.params
            and not self.partial
            and "*" not in self.segments
            and "**" not in self.segments
        )


def _partial(seg: str, names: set[str]) -> tuple[Segment, tuple[str, ...]]:
    """A segment with literal text around or between templates (``{name}.{ext}``)."""
    literals: list[str] = []
    found: list[str] = []
    pos = 0
    for m in _TEMPLATE.finditer(seg):
        literals.append(seg[pos : m.start()])
        name = m.group(1)
        if not _NAME.match(name):
            raise PatternError(f"bad template {m.group(0)!r} in segment {seg!r} (use '{{name}}')")
        if name in names or name in found:
            raise PatternError(f"template name {name!r} is used twice")
        found.append(name)
        pos = m.end()
    literals.append(seg[pos:])
    for i, lit in enumerate(literals):
        if _BAD_LITERAL.search(lit):
            raise PatternError(
                f"segment {seg!r} has a character that is not allowed "
                "(no unpaired '{' or '}', '*', '%', '?', '#', '\\', spaces)"
            )
        if lit == "" and 0 < i < len(literals) - 1:
            raise PatternError(
                f"segment {seg!r}: two templates need literal text between them "
                "(where one ends and the next begins is otherwise a guess)"
            )
    return Segment(tuple(literals)), tuple(found)


def parse_pattern(text: str) -> Pattern:
    """Parse and check a route pattern; raise ``PatternError`` with a reason."""
    if not text.startswith("/"):
        raise PatternError("must start with '/'")
    if text == "/":
        return Pattern(text, (), ())
    body = text[1:]
    if body.endswith("/"):
        raise PatternError("must not end with '/' (paths are matched without a trailing slash)")
    segments: list[str] = []
    params: list[tuple[int, str]] = []
    partial: list[tuple[int, Segment, tuple[str, ...]]] = []
    names: set[str] = set()
    parts = body.split("/")
    for i, seg in enumerate(parts):
        if seg == "":
            raise PatternError("empty segment ('//')")
        if seg in (".", ".."):
            raise PatternError("dot segments are not allowed")
        if seg == "**":
            if i != len(parts) - 1:
                raise PatternError("'**' is only allowed as the last segment")
            segments.append("**")
        elif seg == "*":
            segments.append("*")
        elif "{" in seg or "}" in seg:
            m = _PARAM.match(seg)
            if m is not None:
                if m.group(1) in names:
                    raise PatternError(f"template name {m.group(1)!r} is used twice")
                names.add(m.group(1))
                params.append((i, m.group(1)))
                segments.append("{}")
                continue
            if not _TEMPLATE.search(seg):
                raise PatternError(f"bad template segment {seg!r} (use '{{name}}')")
            shape, found = _partial(seg, names)
            names.update(found)
            partial.append((i, shape, found))
            segments.append(shape.skeleton)
        else:
            if _BAD_LITERAL.search(seg):
                raise PatternError(
                    f"segment {seg!r} has a character that is not allowed "
                    "(no '*' inside a segment, '%', '?', '#', '\\', spaces)"
                )
            segments.append(seg)
    return Pattern(text, tuple(segments), tuple(params), tuple(partial))


@dataclass(slots=True)
class _Node(Generic[T]):
    literal: dict[str, _Node[T]] = field(default_factory=dict)
    # segments with templates and literal text, most literal characters first
    partial: list[tuple[Segment, _Node[T]]] = field(default_factory=list)
    param: _Node[T] | None = None
    star: _Node[T] | None = None
    end: dict[str, tuple[Pattern, T]] | None = None  # method -> route ending here
    rest: dict[str, tuple[Pattern, T]] | None = None  # method -> route ending in "**" here


def _pick(methods: dict[str, tuple[Pattern, T]] | None, method: str) -> tuple[Pattern, T] | None:
    if methods is None:
        return None
    return methods.get(method) or methods.get("*")


class RouteMatcher(Generic[T]):
    """Immutable after construction; lookups are thread-safe."""

    __slots__ = ("_exact", "_has_rest", "_max_depth", "_root")

    def __init__(self, entries: Iterable[tuple[Iterable[str], Pattern, T]]) -> None:
        self._exact: dict[str, dict[str, tuple[Pattern, T]]] = {}
        self._root: _Node[T] = _Node()
        self._max_depth = 0
        self._has_rest = False
        for methods, pattern, value in entries:
            node = self._root
            segs = pattern.segments
            tail = segs[-1] if segs else None
            walk = segs[:-1] if tail == "**" else segs
            shapes = {i: shape for i, shape, _ in pattern.partial}
            for i, seg in enumerate(walk):
                if seg == "{}":
                    node.param = node.param or _Node()
                    node = node.param
                elif seg == "*":
                    node.star = node.star or _Node()
                    node = node.star
                elif i in shapes:
                    node = _partial_child(node, shapes[i])
                else:
                    node = node.literal.setdefault(seg, _Node())
            self._max_depth = max(self._max_depth, len(walk))
            if tail == "**":
                self._has_rest = True
                node.rest = node.rest if node.rest is not None else {}
                target = node.rest
            else:
                node.end = node.end if node.end is not None else {}
                target = node.end
            for method in methods:
                if method in target:
                    raise PatternError(
                        f"{method} {pattern.text} is already matched by {target[method][0].text}"
                    )
                target[method] = (pattern, value)
            if pattern.exact:
                bucket = self._exact.setdefault(pattern.text, {})
                for method in methods:
                    bucket[method] = (pattern, value)

    def match(self, method: str, path: str) -> tuple[T, dict[str, str]] | None:
        """Return the most specific route for a canonical path and its template captures."""
        bucket = self._exact.get(path)
        if bucket is not None:
            hit = bucket.get(method) or bucket.get("*")
            if hit is not None:
                return hit[1], {}
        segs = path.split("/")[1:] if path != "/" else []
        n = len(segs)
        if n > self._max_depth and not self._has_rest:
            return None
        # Depth-first search, most specific child first; node depth == segment index, so
        # every trie node is visited at most once.
        stack: list[tuple[_Node[T], int, bool]] = [(self._root, 0, False)]
        while stack:
            node, i, rest_only = stack.pop()
            if rest_only:
                found = _pick(node.rest, method)
                if found is not None:
                    return found[1], _captures(found[0], segs)
                continue
            if i == n:
                found = _pick(node.end, method) or _pick(node.rest, method)
                if found is not None:
                    return found[1], _captures(found[0], segs)
                continue
            if node.rest is not None:
                stack.append((node, i, True))
            if node.star is not None:
                stack.append((node.star, i + 1, False))
            seg = segs[i]
            if node.param is not None and seg:
                stack.append((node.param, i + 1, False))
            if node.partial:
                for shape, child in reversed(node.partial):
                    if shape.split(seg) is not None:
                        stack.append((child, i + 1, False))
            child = node.literal.get(seg)
            if child is not None:
                stack.append((child, i + 1, False))
        return None


def _partial_child(node: _Node[T], shape: Segment) -> _Node[T]:
    for known, child in node.partial:
        if known.skeleton == shape.skeleton:
            return child
    child = _Node()
    node.partial.append((shape, child))
    node.partial.sort(key=lambda entry: (-entry[0].weight, entry[0].skeleton))
    return child


def _captures(pattern: Pattern, segs: list[str]) -> dict[str, str]:
    found = {name: segs[i] for i, name in pattern.params}
    for i, shape, names in pattern.partial:
        values = shape.split(segs[i])
        if values is not None:
            found.update(zip(names, values, strict=True))
    return found
