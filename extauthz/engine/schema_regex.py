"""JSON Schema ``pattern``/``patternProperties`` regexes on a linear-time engine (RE2).

These regexes come from policies and run on attacker input. Python's backtracking ``re`` can
take exponential (``^(a|aa)+$``) or polynomial (``^a*a*a*$``) time on a crafted value, and no
load-time heuristic catches every shape. RE2 has no backtracking: a search costs time linear in
the input whatever the pattern, so every pattern is compiled here once at load and the
validators call these objects instead of ``re``. RE2 cannot express lookaround or
backreferences; a pattern using them is refused at load (``UnsupportedPattern``).

Semantics are ECMA-262's where they differ from Python's: ``$`` matches only at the very end
(Python's also before a final newline), and ``\\d``, ``\\w``, ``\\s``, ``\\b`` are ASCII only.
"""

from __future__ import annotations

import re
from functools import lru_cache

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not printed to stderr
_OPTIONS.never_capture = True  # only "does it match" is asked: no submatch bookkeeping

# The public ``re2.compile(...).search`` builds a match object and maps byte offsets back to
# characters (~3 µs a call); a yes/no answer needs only the underlying ``Match`` (~0.5 µs).
# google-re2 >= 1.1 has both; fall back to the public API if the private one ever moves.
try:
    _RE2 = re2._re2.RE2
    _UNANCHORED = re2._Anchor.UNANCHORED
    _START = re2._Anchor.ANCHOR_START
    _FAST = _RE2(b"a", _OPTIONS).Match(_UNANCHORED, b"ba", 0, 2)[0] == (1, 2)
except Exception:  # pragma: no cover - depends on the installed google-re2
    _FAST = False


class UnsupportedPattern(ValueError):
    """A pattern RE2 cannot compile (lookaround, backreferences, ...)."""


class LinearPattern:
    """A compiled pattern with the ``search`` the schema validators call; truthy on a match."""

    __slots__ = ("_match", "_public", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        source = _ecma_escapes(pattern)
        try:
            self._public = re2.compile(source, _OPTIONS)
        except UnicodeEncodeError:
            raise UnsupportedPattern(f"pattern {pattern!r} is not valid Unicode") from None
        except re2.error as exc:
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise UnsupportedPattern(
                "pattern uses a feature the linear-time regex engine does not support "
                f"(lookaround/backreference): {pattern!r} ({detail})"
            ) from None
        self._match = _RE2(source.encode("utf-8"), _OPTIONS).Match if _FAST else None

    def search(self, text: str) -> bool:
        """True when ``pattern`` matches somewhere in ``text`` (JSON Schema semantics)."""
        if self._match is None:
            return self._public.search(text) is not None
        data = text.encode("utf-8", "surrogatepass")  # lone surrogates: no crash, no match
        return self._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0

    def match(self, text: str) -> bool:
        """True when ``pattern`` matches at the start of ``text``."""
        if self._match is None:
            return self._public.match(text) is not None
        data = text.encode("utf-8", "surrogatepass")
        return self._match(_START, data, 0, len(data))[0][0] >= 0

    def __repr__(self) -> str:
        return f"LinearPattern({self.pattern!r})"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        """Pickled as its pattern (a policy compiled in a child process, ``policy._child``)."""
        return compile_pattern, (self.pattern,)


_U_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|.)", re.DOTALL)


def _ecma_escapes(pattern: str) -> str:
    """ECMA-262's ``\\uXXXX`` (common in JSON Schema) in RE2's spelling, ``\\x{XXXX}``."""
    if "\\u" not in pattern:
        return pattern
    return _U_ESCAPE.sub(lambda m: f"\\x{{{m[1]}}}" if m[1] else m[0], pattern)


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> LinearPattern:
    """The RE2 program for ``pattern`` (cached: a policy often repeats one pattern)."""
    return LinearPattern(pattern)
