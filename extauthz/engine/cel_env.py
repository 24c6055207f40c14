"""The CEL environment policies see (upstream ContractShield's), and its translation to ours.

Policies are written against upstream's documented environment, where ``request.body`` is
the body *envelope*::

    request.body.present           bool: the request had a body
    request.body.sizeBytes         int: its size
    request.body.json.sample       the parsed JSON (or form) body, null when there is none
    request.body.json.redacted     bool: the caller's adapter masked values in the sample

The engine evaluates a simpler shape in which ``request.body`` *is* the parsed value (so a
constant-key read like ``request.body.tenantId`` can become a variable of its own, see
``cel.FastPath``). ``translate`` rewrites an expression from the first shape to the second,
once, at load. Reads of a body field by name, ``request.body.tenantId``, stay as a shorthand
for ``request.body.json.sample.tenantId``, except for the envelope's own names
(``present``, ``sizeBytes``, ``json``) and the names reserved for the context's raw body
(``raw``, ``sha256``, which CEL does not see): each expression has exactly one meaning.
"""

from __future__ import annotations

import re

# What a policy may name: upstream's documented variables plus ours (``request.params``).
USER_VARIABLES: dict[str, tuple[str, ...]] = {
    "request": ("method", "path", "routeId", "headers", "query", "params", "body", "contentType"),
    "identity": ("authenticated", "subject", "tenant", "scopes", "claims"),
    "client": ("ip", "userAgent"),
    "runtime": ("language", "service", "env"),
    "webhook": ("provider", "signatureValid", "replayed"),
}

# What the engine evaluates: ``request.body`` is the parsed value; the envelope's parts are
# fields of their own (never visible to a policy: ``USER_VARIABLES`` is checked first).
INTERNAL_REQUEST_FIELDS = ("bodyPresent", "bodySize", "bodyRedacted", "bodyJson", "bodyEnvelope")

ENVELOPE_FIELDS = ("present", "sizeBytes", "json")
RESERVED_BODY_FIELDS = ("raw", "sha256")

_STRINGS = re.compile(
    r"""[rRbB]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""", re.S
)
_BODY = re.compile(r"(?<![\w.])request\s*\.\s*body\b")
_FIELD = re.compile(r"\s*\.\s*([A-Za-z_]\w*)(?!\w|\s*\()")
_INDEX = re.compile(r"""\s*\[\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\]""")
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|existsOne|map|filter|sortBy|transformList|transformMap)"
    r"\s*\(\s*([A-Za-z_]\w*)\s*,"
)


class CelEnvProblem(ValueError):
    """An expression that names something the environment does not offer (with the fix)."""


def _reserved(name: str) -> CelEnvProblem:
    return CelEnvProblem(
        f"request.body.{name} is reserved (the raw body and its digest are not exposed to CEL); "
        f"for a body field named {name!r} write request.body.json.sample.{name}"
    )


def translate(expr: str) -> str:
    """``expr`` rewritten from upstream's body envelope to the engine's shape.

    Raises ``CelEnvProblem`` for reads that have no meaning (``request.body.raw``,
    ``request.body.json.x``).
    """
    strings = [m.span() for m in _STRINGS.finditer(expr)]
    bound = set(_MACRO_VAR.findall(_STRINGS.sub("''", expr)))
    if "request" in bound:  # a macro variable named ``request`` shadows ours everywhere
        return expr
    pieces: list[str] = []
    pos = 0
    for m in _BODY.finditer(expr):
        if any(a <= m.start() < b for a, b in strings):
            continue
        if expr[: m.start()].rstrip().endswith("."):  # ``x. request``: a field name, not ours
            continue
        end = m.end()
        replacement: str | None = None
        f1 = _FIELD.match(expr, end)
        if f1 is None:
            index = _INDEX.match(expr, end)
            if index is not None:
                key = index.group(1) if index.group(1) is not None else index.group(2)
                if key in RESERVED_BODY_FIELDS:
                    raise _reserved(key)
                if key in ENVELOPE_FIELDS:
                    raise CelEnvProblem(
                        f"request.body[{key!r}] is ambiguous: write request.body.{key} for the "
                        f"envelope's field or request.body.json.sample[{key!r}] for the body's"
                    )
                continue  # a body field by constant key: the shorthand
            if expr[end:].lstrip().startswith("["):
                raise CelEnvProblem(
                    "request.body[...] with a computed key is ambiguous: write "
                    "request.body.json.sample[...]"
                )
            replacement = "request.bodyEnvelope"
        else:
            name = f1.group(1)
            if name in RESERVED_BODY_FIELDS:
                raise _reserved(name)
            if name == "present":
                replacement, end = "request.bodyPresent", f1.end()
            elif name == "sizeBytes":
                replacement, end = "request.bodySize", f1.end()
            elif name == "json":
                f2 = _FIELD.match(expr, f1.end())
                if f2 is not None and f2.group(1) == "sample":
                    replacement, end = "request.body", f2.end()
                elif f2 is not None and f2.group(1) == "redacted":
                    replacement, end = "request.bodyRedacted", f2.end()
                elif f2 is not None or _INDEX.match(expr, f1.end()):
                    raise CelEnvProblem(
                        "request.body.json has the fields 'sample' and 'redacted' only"
                    )
                else:
                    replacement, end = "request.bodyJson", f1.end()
            else:
                continue  # request.body.<field>: the shorthand, already the engine's shape
        pieces.append(expr[pos : m.start()])
        pieces.append(replacement)
        pos = end
    if not pieces:
        return expr
    pieces.append(expr[pos:])
    return "".join(pieces)
