"""The simplest CEL conditions evaluated without the ``cel`` library: a hot path behind ``NATIVE``.

Why: per check, ``cel.Context(variables=...)`` costs ~26k instructions for the demo route's
three variables (the library tries each string as three kinds of number before a string)
and its two programs ~8k more on the fresh context, about a tenth of a whole check
(``bench/door_stages.py``). Most rules are conditions like ``identity.authenticated``,
``identity.tenant != "" && request.body.tenantId == identity.tenant``, ``"x" in
identity.scopes`` or ``request.body.amount <= 1000``: names, literals, comparisons, ``in``,
``!``, ``&&``, ``||`` and parentheses. Such a program (its source after the engine's rewrite
to top-level names, ``cel.py``) is compiled here once, at policy load, into Python closures.

The closures never guess. They give the value CEL gives where that is certain, and
``FALLBACK`` everywhere else, and then the caller runs the library exactly as before:

- a variable that is not a ``bool``, ``str`` (valid Unicode), ``int`` within int64,
  ``float``, ``None`` or a list of those, for any variable of the request (the library
  converts all of them or refuses the context);
- ``==`` / ``!=`` between values of different types or between lists (CEL's heterogeneous
  equality is left to the library: ``true == 1`` is false there, ``1 == 1.0`` true);
- ``<`` ``<=`` ``>`` ``>=`` other than between two strings (code point order, as CEL's
  UTF-8 bytes), two ints, two booleans or two floats that are not NaN (the library refuses
  NaN and ``null``);
- ``x in list`` (a list variable or a list of literals) is true when an element of ``x``'s
  type equals it, false when every element has that type and none equals it; an element of
  another type is the library's (``1 in [1.0]`` is true there);
- ``!`` of a non-boolean; ``&&`` / ``||`` follow CEL's commutative rules: ``false && x`` is
  false and ``true || x`` true whatever ``x`` is (an error or a non-boolean included), two
  booleans give the boolean, anything else falls back;
- a source outside the subset compiles to ``None`` (the route runs in the library): other
  operators, member access, indexing, calls, macros, a list literal holding anything but
  literals (or a trailing comma), escapes in string literals, numbers other than plain
  decimal integers, comments, nesting deeper than ``MAX_DEPTH``, more than ``MAX_TOKENS``.

``tests/engine/test_engine_cel_native.py`` pins it to the library over random expressions and
values (hypothesis) and over whole decisions with the seam on and off.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping

#: A value of the subset: what a variable or a literal may hold (a list only on ``in``'s right).
Value = bool | str | int | float | None | list[bool | str | int | float | None]


class _Fallback:
    """The marker for "the library decides": a result the closures cannot vouch for."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FALLBACK"


FALLBACK = _Fallback()

#: One compiled condition: the request's variables -> a value, or ``FALLBACK``.
Native = Callable[[Mapping[str, object]], "Value | _Fallback"]

MAX_DEPTH = 32  # operators and parentheses nested; rules are short, a deep one runs in cel
MAX_TOKENS = 256  # a longer chain would nest closures as deep as Python's recursion limit

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# CEL's reserved words (besides the literals true, false, null): never a variable name.
_RESERVED = frozenset(
    [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)
_TOKEN = re.compile(
    r"""[ \t\n\r\f]*(?:
        (?P<str>"[^"\\\n\r]*"|'[^'\\\n\r]*')
      | (?P<int>0|[1-9][0-9]*)(?![0-9A-Za-z_.])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|<|>|&&|\|\||!(?!=)|\(|\)|\[|\]|,)
    )""",
    re.X,
)
_TRAILING = re.compile(r"[ \t\n\r\f]*\Z")


class _Outside(Exception):
    """The source is not in the subset."""


def simple_variables(variables: Mapping[str, object]) -> bool:
    """Every value is one the subset reads exactly as the library converts it: a scalar, or a
    list of scalars (``identity.scopes``, which ``in`` reads)."""
    for value in variables.values():
        if type(value) is list:
            for item in value:  # type: ignore[attr-defined]
                if not _scalar(item):
                    return False
        elif not _scalar(value):
            return False
    return True


def _scalar(value: object) -> bool:
    t = type(value)
    if t is str:
        if value.isascii():  # type: ignore[attr-defined]
            return True
        try:
            value.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError:  # a lone surrogate: the library refuses it
            return False
        return True
    if t is bool or t is float or value is None:
        return True
    if t is int:
        return _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
    return False


def compile_native(source: str) -> Native | None:
    """``source`` (a compiled CEL program's text) as closures, or None outside the subset."""
    try:
        tokens = _tokens(source)
        if len(tokens) > MAX_TOKENS:
            return None
        parser = _Parser(tokens)
        node = parser.disjunction(0)
        if parser.pos != len(tokens):
            raise _Outside
    except (_Outside, RecursionError):
        return None
    return node


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while _TRAILING.match(source, pos) is None:
        m = _TOKEN.match(source, pos)
        if m is None:
            raise _Outside
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent in CEL's precedence: ``||`` < ``&&`` < relations (``==`` ``!=`` ``<``
    ``<=`` ``>`` ``>=`` ``in``, left-associative) < ``!``."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, op: str) -> bool:
        if self._peek() == ("op", op):
            self.pos += 1
            return True
        return False

    def disjunction(self, depth: int) -> Native:
        if depth > MAX_DEPTH:
            raise _Outside
        node = self.conjunction(depth + 1)
        while self._take("||"):
            node = _junction(node, self.conjunction(depth + 1), True)
        return node

    def conjunction(self, depth: int) -> Native:
        node = self.relation(depth)
        while self._take("&&"):
            node = _junction(node, self.relation(depth), False)
        return node

    def relation(self, depth: int) -> Native:
        node = self.unary(depth)
        while True:  # left-associative, as CEL's ``a == b == c``
            token = self._peek()
            if token == ("name", "in"):
                self.pos += 1
                node = _member(node, self._container(depth))
                continue
            compare = _RELATIONS.get(token[1]) if token is not None and token[0] == "op" else None
            if compare is None:
                return node
            self.pos += 1
            if compare is operator.eq or compare is operator.ne:
                node = _equal(node, self.unary(depth), compare)
            else:
                node = _order(node, self.unary(depth), compare)

    def _container(self, depth: int) -> Native:
        """The right side of ``in``: a list of literals, or an expression (a list variable)."""
        if not self._take("["):
            return self.unary(depth)
        items: list[Value] = []
        while not self._take("]"):
            if items and not self._take(","):
                raise _Outside
            token = self._peek()
            if token is None or token[0] == "op":  # a trailing comma, a nested list
                raise _Outside
            self.pos += 1
            items.append(_constant(*token))
        return _literal(items)  # type: ignore[arg-type]  # a list only ``in`` reads

    def unary(self, depth: int) -> Native:
        if self._take("!"):
            if depth > MAX_DEPTH:
                raise _Outside
            return _not(self.unary(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Native:
        token = self._peek()
        if token is None:
            raise _Outside
        self.pos += 1
        kind, text = token
        if kind == "op":
            if text != "(":
                raise _Outside
            node = self.disjunction(depth + 1)
            if not self._take(")"):
                raise _Outside
            return node
        if kind == "name" and text not in _LITERALS:
            if text in _RESERVED:
                raise _Outside
            if self._peek() == ("op", "("):  # a call: a function, not a variable
                raise _Outside
            return _variable(text)
        return _literal(_constant(kind, text))


_LITERALS = {"true": True, "false": False, "null": None}
_RELATIONS: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _constant(kind: str, text: str) -> Value:
    """A literal token's value: a string, an int64, true, false or null."""
    if kind == "str":
        return text[1:-1]
    if kind == "int":
        number = int(text)
        if number > _INT64_MAX:
            raise _Outside
        return number
    if kind == "name" and text in _LITERALS:
        return _LITERALS[text]
    raise _Outside


def _literal(value: Value) -> Native:
    return lambda variables: value


def _variable(name: str) -> Native:
    def read(variables: Mapping[str, object]) -> Value | _Fallback:
        value = variables.get(name, FALLBACK)  # undeclared: the library's error
        return value  # type: ignore[return-value]  # simple_variables checked every value

    return read


def _not(operand: Native) -> Native:
    def negate(variables: Mapping[str, object]) -> Value | _Fallback:
        value = operand(variables)
        if value is True:
            return False
        if value is False:
            return True
        return FALLBACK

    return negate


def _junction(left: Native, right: Native, decisive: bool) -> Native:
    """``&&`` (``decisive`` False) or ``||`` (True), commutative as in CEL: ``false && x`` is
    false and ``true || x`` true whatever ``x`` is (an error or a non-boolean included)."""
    other = not decisive

    def junction(variables: Mapping[str, object]) -> Value | _Fallback:
        a = left(variables)
        if a is decisive:
            return decisive
        b = right(variables)
        if b is decisive:
            return decisive
        if a is other and b is other:
            return other
        return FALLBACK

    return junction


def _equal(left: Native, right: Native, compare: Callable[[object, object], bool]) -> Native:
    """``==`` (``operator.eq``) or ``!=`` (``operator.ne``) between values of one type."""

    def equal(variables: Mapping[str, object]) -> Value | _Fallback:
        a = left(variables)
        b = right(variables)
        if a is FALLBACK or type(a) is not type(b) or type(a) is list:
            return FALLBACK  # CEL's equality across types and of lists is the library's
        return compare(a, b)

    return equal


def _order(left: Native, right: Native, compare: Callable[[object, object], bool]) -> Native:
    """``<``, ``<=``, ``>``, ``>=`` between two strings, two ints, two booleans or two floats
    that are not NaN; NaN and ``null`` (which the library refuses) and mixed types (``1 <
    2.0``, which it orders) are the library's."""

    def order(variables: Mapping[str, object]) -> Value | _Fallback:
        a = left(variables)
        b = right(variables)
        t = type(a)
        if t is not type(b) or t not in _ORDERED or a != a or b != b:  # NaN != NaN
            return FALLBACK
        return compare(a, b)

    return order


_ORDERED = (str, int, bool, float)


def _member(item: Native, container: Native) -> Native:
    """``x in list``: true when an element of ``x``'s type equals it; false when every element
    has its type and none does; an element of another type is the library's (``1 in [1.0]``)."""

    def member(variables: Mapping[str, object]) -> Value | _Fallback:
        x = item(variables)
        items = container(variables)
        if x is FALLBACK or type(items) is not list or type(x) is list:
            return FALLBACK
        t = type(x)
        mixed = False
        for element in items:  # type: ignore[union-attr]
            if type(element) is not t:
                mixed = True
            elif element == x:
                return True
        return FALLBACK if mixed else False

    return member
