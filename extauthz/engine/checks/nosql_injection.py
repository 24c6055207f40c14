"""NoSQL injection: a MongoDB operator where the upstream expects plain data, or JavaScript
that breaks out of a ``$where`` string. Opt-in.

Operators are query, update, aggregation-stage and expression operators (``$ne``, ``$set``,
``$where``, ``$lookup``, ``$function``, ...: ``OPERATORS``), found

- as an object key (``{"$ne": 1}``, ``{"$set": {"role": "admin"}}``);
- in a key the way query-string parsers nest it: brackets (``a[$ne]``, ``a[0][$gt]``: qs,
  PHP, Rack) and dots (``a.$ne``: qs with ``allowDots``);
- as a whole value (``$where``: code that builds a query from values uses it as a key), in
  brackets in a value (``[$ne]=1``), or as a key of a JSON or JavaScript object literal
  inside a string (``'{"$gt": ""}'``, ``"$where: '1 == 1'"``) that an upstream parses;
  ``\\u0024`` stands for ``$`` there, since ``JSON.parse`` decodes it.

What normalises an operator on its way to MongoDB, and so what the check sees through: the
JSON parser (``"\\u0024ne"`` is ``$ne``: the check reads parsed keys), the query and form
parsers (``%24ne``, decoded before the check; a key still holding ``%24`` after that is
decoded once more), qs's bracket and dot nesting. MongoDB itself compares operator names
exactly, drivers do not fold case or Unicode, and a key with a space or a zero-width
character before ``$`` is a field name to MongoDB, not an operator; the check still compares
names without regard to case (``$NE`` is refused by MongoDB, harmless to flag) and folds
compatibility forms (fullwidth ``U+FF04 ne``) in keys, so no spelling is missed for want of one.

Server-side JavaScript (a ``$where`` string built from input, ``mapReduce``): a quote that
closes the string followed by ``;``, ``&&`` or ``||`` and JavaScript (``' && this.password``,
``';return true;var x='``, ``"; sleep(5000); "``), a tautology after ``||`` (``|| 1==1``),
and shell methods (``db.users.drop()``).

Every regex has bounded or single-class repeats only (linear time).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import unquote

from ._kinds import Detector

# MongoDB's operators (query, update, aggregation stages and expressions, query modifiers),
# lower case; names that are also common English words after a "$" in prose ("$set" is not
# one of them: it is an update operator) are still operators where a key is concerned.
OPERATORS = frozenset(
    """
    eq ne gt gte lt lte in nin and or not nor exists type expr jsonschema mod regex options
    text search language casesensitive diacriticsensitive where geointersects geowithin near
    nearsphere box center centersphere geometry maxdistance mindistance polygon uniquedocs all
    elemmatch size bitsallclear bitsallset bitsanyclear bitsanyset comment rand natural meta
    slice samplerate
    currentdate inc min max mul rename set setoninsert unset addtoset pop pull push pullall
    each position sort bit isolated atomic
    addfields bucket bucketauto changestream collstats count currentop densify documents facet
    fill geonear graphlookup group indexstats limit listsessions lookup match merge out
    planCacheStats project redact replaceroot replacewith sample setwindowfields skip
    sortbycount unionwith unwind vectorsearch
    function accumulator let literal cond switch ifnull
    """.lower().split()
)
_OPERATORS_SIGIL = frozenset("$" + op for op in OPERATORS)
# An operator name: a "$" and letters (MongoDB's are ASCII letters only).
_NAME = r"\$([A-Za-z]{1,24})\b"
_IN_KEY = re.compile(r"\[[ \t]{0,8}" + _NAME + r"[ \t]{0,8}\]|(?:^|\.)" + _NAME)
_IN_VALUE = re.compile(
    # an object key in JSON or JavaScript syntax, or a bracketed key in a query string
    r"(?:^|[{,\[(]|[ \t])[ \t]{0,64}[\"']?"
    + _NAME
    + r"[\"']?[ \t]{0,64}:|\[[ \t]{0,8}"
    + _NAME
    + r"[ \t]{0,8}\]"
)
_JS = re.compile(
    # a string closed, then JavaScript; a tautology; a shell method; a busy loop. JavaScript
    # is case-sensitive, and so is this.
    r"['\"][ \t]{0,8}(?:;[ \t]?(?:return\b|sleep\(|while ?\(|db\.)"
    r"|(?:&&|\|\|)[ \t]{0,8}(?:return\b|this\.|sleep\(|while ?\(|db\.|true\b|1[ \t]{0,4}=="
    r"|'[^']{0,20}'[ \t]{0,4}==|\"[^\"]{0,20}\"[ \t]{0,4}==))"
    r"|\|\|[ \t]{0,8}(?:1[ \t]{0,4}==[ \t]{0,4}1\b|true\b|'[^']{0,20}'[ \t]{0,4}==)"
    r"|;[ \t]?return[ \t(]{1,8}(?:true|1|this)\)?[ \t]{0,8}(?:$|;|&&|\|\|)"
    r"|\bdb\.[A-Za-z_]\w{0,63}\.(?:insert|find|update|remove|drop|mapReduce|aggregate|delete)"
    r"\w{0,16}\("
    r"|\bdo[ \t]{0,8}\{[^}]{0,80}\}[ \t]{0,8}while ?\("
)
_JS_HINT = re.compile(r"&&|\|\||;[ \t]?return|sleep\(|db\.|while ?\(")  # what _JS needs
_DOLLAR_ESCAPE = re.compile(r"\\u0024", re.IGNORECASE)


def _operator(name: str) -> bool:
    return name.lower() in OPERATORS


def nosql_key_reason(key: str) -> str | None:
    """An operator as the key, or nested in it the way qs, PHP and Rack read keys."""
    if key[:1] == "$" and _operator(key[1:]):
        return f"operator key {key!r}"
    if not key.isascii():
        folded = unicodedata.normalize("NFKC", key)
        if folded != key and "$" in folded:
            why = nosql_key_reason(folded)
            return f"{why} (as {key!r})" if why else None
    if "%" in key:
        decoded = unquote(key)
        if decoded != key and "$" in decoded:
            return nosql_key_reason(decoded)
    if "$" in key:
        for m in _IN_KEY.finditer(key):
            name = m.group(1) or m.group(2)
            if _operator(name):
                return f"operator key {key!r}"
    return None


def nosql_value_reason(value: str) -> str | None:
    """An operator where data is expected, or server-side JavaScript (see the docstring)."""
    if "$" in value or "\\u" in value or "\\U" in value:
        text = _DOLLAR_ESCAPE.sub("$", value) if "\\" in value else value
        if text[:1] == "$" and text.lower() in _OPERATORS_SIGIL:
            return f"operator value {value!r}"
        for m in _IN_VALUE.finditer(text):
            name = m.group(1) or m.group(2)
            if _operator(name):
                return f"embedded operator '${name}'"
    m = _JS.search(value) if _JS_HINT.search(value) else None
    if m is not None:
        return f"server-side JavaScript {m.group(0)[:30]!r}"
    return None


def _nosql_key(key: str, value: Any) -> str | None:
    return nosql_key_reason(key)


EXPLAIN = "a MongoDB query operator where the upstream expects plain data"
STRING_TRIGGERS = ("$", "\\u", "\\U", "&&", "||", ";return", "; return", "sleep(", "db.")
STRING_TRIGGERS += ("while(", "while (")
# "$" and its compatibility forms (fullwidth, small), and a percent-encoded "$".
KEY_TRIGGERS = ("$", "\uff04", "\ufe69", "%24")
CHECK = Detector("nosqlInjection", "vulnerability.nosqlInjection", False, EXPLAIN,
                 strings=nosql_value_reason, string_triggers=STRING_TRIGGERS,
                 keys=_nosql_key, key_triggers=KEY_TRIGGERS)  # fmt: skip
