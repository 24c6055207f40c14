"""The JSON doors' fast codec (``context_codec``) against the plain path it stands in for.

``fast_context`` either builds exactly the context ``json.loads`` + ``from_dict`` builds (equal
and of the same types: ``repr`` compared, so ``1`` is not ``1.0`` nor ``True``) or declines,
and the plain path then accepts or refuses with its own message. Hypothesis draws contexts
near the common shape with any field replaced by any JSON value, unknown keys, big integers,
NaN, lone surrogates and invalid UTF-8. The answer encoders give the plain encoders' bytes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from extauthz._exceptions import InvalidContext
from extauthz._json import COMPACT_ASCII
from extauthz.context import Body, BodyJson, HttpRequest, Identity, RequestContext
from extauthz.context_codec import (
    MAX_OPENERS,
    context_from_json,
    decision_json,
    fast_context,
    fast_envelope,
    plain_context,
    upstream_answer,
)
from extauthz.decision import Decision, DecisionMetadata, Risk, RuleHit


def new_id() -> str:
    return "generated-id"


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
SCALARS = st.integers(0, 19).flatmap(lambda i: st.floats() if i == 0 else SCALARS)  # NaN, inf
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def field(proper: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the field's own type, one time in forty any JSON value."""
    return st.integers(0, 39).flatmap(lambda i: VALUES if i == 0 else proper)


TEXT = st.text(max_size=12)
OPT_TEXT = st.none() | TEXT
BODY = st.fixed_dictionaries(
    {},
    optional={
        "present": field(st.booleans() | st.none()),
        "sizeBytes": field(st.integers(min_value=-3, max_value=10**25) | st.none()),
        "sha256": field(OPT_TEXT),
        "raw": field(TEXT),
        "rawEncoding": field(st.sampled_from(["utf-8", "utf8", "base64", "latin1"])),
        "rawBase64": field(st.sampled_from(["aGk=", "aGk", "!!", ""]) | TEXT),
        "json": field(
            st.fixed_dictionaries({}, optional={"sample": VALUES, "redacted": field(st.booleans())})
        ),
        "partial": field(st.booleans()),
    },
)
REQUEST = st.fixed_dictionaries(
    {
        "method": field(st.sampled_from(["GET", "POST", ""]) | TEXT),
        "path": field(st.sampled_from(["/a", "/api/v1/x", "/a?b=1&b=2", "/a#f", "?x", ""]) | TEXT),
    },
    optional={
        "headers": field(st.dictionaries(TEXT, TEXT, max_size=4)),
        "query": field(st.dictionaries(TEXT, TEXT, max_size=3)),
        "contentType": field(OPT_TEXT),
        "routeId": field(OPT_TEXT),
        "host": field(OPT_TEXT),
        "scheme": field(OPT_TEXT),
        "body": field(BODY | st.none()),
    },
)
CONTEXT = st.fixed_dictionaries(
    {"request": field(REQUEST)},
    optional={
        "identity": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "authenticated": field(st.booleans()),
                    "subject": field(OPT_TEXT),
                    "tenant": field(OPT_TEXT),
                    "scopes": field(st.lists(TEXT, max_size=3) | TEXT),
                    "claims": field(st.dictionaries(TEXT, VALUES, max_size=3)),
                },
            )
            | st.none()
        ),
        "client": field(
            st.fixed_dictionaries(
                {}, optional={"ip": field(OPT_TEXT), "userAgent": field(OPT_TEXT)}
            )
        ),
        "runtime": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "service": field(OPT_TEXT),
                    "env": field(OPT_TEXT),
                    "language": field(OPT_TEXT),
                },
            )
        ),
        "webhook": field(
            st.fixed_dictionaries(
                {},
                optional={
                    "provider": field(OPT_TEXT),
                    "signatureValid": field(st.booleans()),
                    "replayed": field(st.booleans()),
                },
            )
        ),
        "id": field(OPT_TEXT),
        "timestamp": field(OPT_TEXT),
        "version": field(OPT_TEXT),
    },
)
# now and then a key the context does not define (ignored by from_dict)
CONTEXT = st.tuples(CONTEXT, st.integers(0, 9), VALUES).map(
    lambda t: {**t[0], "unknownKey": t[2]} if t[1] == 0 else t[0]
)  # fmt: skip


@st.composite
def encoded(draw: st.DrawFn, doc: st.SearchStrategy[Any]) -> bytes:
    """``doc`` as a client might write it: ASCII-escaped or UTF-8 (lone surrogates then make
    invalid UTF-8), with or without spaces, now and then cut short."""
    text = json.dumps(
        draw(doc),
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def plain(body: bytes) -> RequestContext | str:
    try:
        return plain_context(body, new_id)
    except InvalidContext as exc:
        return f"refused: {exc}"


def assert_same(fast: RequestContext | None, body: bytes) -> None:
    reference = plain(body)
    if fast is not None:
        assert isinstance(reference, RequestContext), reference
        assert fast == reference
        assert repr(fast) == repr(reference)  # the same types too: 1, 1.0 and True are ==
    try:
        chosen: RequestContext | str = context_from_json(body, new_id)
    except InvalidContext as exc:
        chosen = f"refused: {exc}"
    assert chosen == reference and repr(chosen) == repr(reference)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoded(field(CONTEXT)))
@example(b'{"request":{"method":"GET","path":"/x"},"x":"\xff"}')
@example(
    b'{"request":{"method":"GET","path":"/x","body":{"json":{"sample":' + b"9" * 4301 + b"}}}}"
)
@example(
    b'{"request":{"method":"GET","path":"/x","body":{"json":{"sample":' + b"9" * 4299 + b"}}}}"
)
@example(b'{"request":{"method":"GET","path":"/x","body":{"json":{"sample":NaN}}}}')
@example(b'{"request":{"method":"GET","path":"/x","body":{"json":{"sample":"\\ud800"}}}}')
@example(b'\xef\xbb\xbf{"request":{"method":"GET","path":"/x"}}')
@example('{"request":{"method":"GET","path":"/x"}}'.encode("utf-16"))
def test_fast_context_is_the_plain_context_or_declines(body: bytes) -> None:
    fast = fast_context(body, new_id)
    event("fast path" if fast is not None else "plain path")
    assert_same(fast, body)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {"context": CONTEXT},
        optional={"policy": st.none() | VALUES, "options": st.none(), "other": VALUES},
    )
)
def test_fast_envelope_takes_the_context_alone(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    fast = fast_envelope(body, new_id)
    if set(doc) != {"context"}:
        assert fast is None  # a policy, options or anything else: the plain path's
    assert_same(fast, json.dumps(doc["context"]).encode())


def test_the_common_shapes_take_the_fast_path() -> None:
    """What PEPs and ``to_dict`` send is decoded by msgspec (else the test above proves little)."""
    ctx = RequestContext(
        HttpRequest(
            "POST",
            "/api/v1/licenses/activate",
            {"content-type": "application/json", "x-request-id": "r"},
            {"page": "2"},
            "application/json",
            body=Body(True, 30, "ab" * 32, b'{"n": 123456789012345678901234}',
                      BodyJson({"n": 123456789012345678901234, "f": 0.1})),
        ),
        Identity(True, "alice", "acme", ("a", "b"), {"tier": ["gold"], "n": 10**30}),
        id="req-1",
    )  # fmt: skip
    for body in (
        ctx.to_json().encode(),
        json.dumps(ctx.to_dict(), ensure_ascii=True, indent=2).encode(),
        b'{"request": {"method": "GET", "path": "/healthz"}}',
        b'{"request":{"method":"POST","path":"/x","body":{"raw":"aGk=","rawEncoding":"base64"}},'
        b'"identity":{"authenticated":true,"scopes":"read write"}}',
    ):
        fast = fast_context(body, new_id)
        assert fast is not None, body
        assert_same(fast, body)
    assert fast_context(ctx.to_json().encode()) == ctx  # big integers kept exactly


def test_deep_bodies_take_the_plain_path() -> None:
    """Past ``MAX_OPENERS`` brackets the plain path decides (its recursion limit is the one
    that has always applied)."""
    sample = "[" * (MAX_OPENERS + 1) + "]" * (MAX_OPENERS + 1)
    body = f'{{"request":{{"method":"GET","path":"/x","body":{{"json":{{"sample":{sample}}}}}}}}}'
    assert fast_context(body.encode()) is None
    assert context_from_json(body.encode()) == plain_context(body.encode())


DECISIONS = st.builds(
    Decision,
    st.sampled_from(["ALLOW", "BLOCK", "MONITOR"]),
    st.integers(100, 599),
    st.text(),
    st.lists(
        st.builds(RuleHit, st.text(max_size=20), st.sampled_from(["low", "high"]), st.text()),
        max_size=3,
    ).map(tuple),
    st.builds(Risk, st.integers(0, 100), st.sampled_from(["none", "high"])),
    st.builds(DecisionMetadata, st.none() | st.text(), st.none() | st.text(),
              st.none() | st.text(), st.none() | st.text()),
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(DECISIONS, st.floats(0, 1e7).map(lambda ms: round(ms, 3)))
def test_answers_are_the_plain_encoders_bytes(decision: Decision, ms: float) -> None:
    try:
        expected: bytes | type = decision.to_json().encode()
    except UnicodeEncodeError:  # a lone surrogate: the door's internal error, both ways
        with pytest.raises(UnicodeEncodeError):
            decision_json(decision)
    else:
        assert decision_json(decision) == expected
    plain_answer = COMPACT_ASCII.encode({"decision": decision.to_dict(), "durationMs": ms})
    assert upstream_answer(decision, ms) == plain_answer.encode()
