"""Issue 24, classes 1-3, through the engine: many variants each (hypothesis).

1. A body's label is not its truth: a payload in JSON is found whatever the label, the text
   encoding (BOM, UTF-16/32), the content coding (gzip, deflate), repeated keys, ``NaN`` or
   trailing data around it; what cannot be read is refused, never allowed unchecked.
2. A body the proxy cut (``partial``) is never allowed.
3. Every value of a repeated key reaches the detectors; a route whose contract reads the body
   refuses repeated keys (``request.body.duplicateKey``), with the policy's switch.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extauthz.context import Body, HttpRequest, RequestContext
from extauthz.decision import ALLOW
from extauthz.engine import body as b
from extauthz.engine.pipeline import evaluate
from extauthz.policy import load_policy_text

POLICY = """
policyVersion: "0.1"
defaults:
  mode: enforce
  vulnerabilityChecks: {nosqlInjection: true, xss: true, prototypePollution: true}
  BODY
routes:
  - id: open
    match: {method: POST, path: /open}
  - id: transfer
    match: {method: POST, path: /transfer}
    contract:
      requestSchema:
        type: object
        properties:
          to: {type: string}
          amount: {type: number, minimum: 1, maximum: 100}
  - id: ruled
    match: {method: POST, path: /ruled}
    rules:
      - {id: small, type: cel, config: {expr: 'request.body.amount < 100'}}
"""


def policy(body: str = "") -> Any:
    return load_policy_text(POLICY.replace("BODY", body))


DEFAULT = policy()


def ctx(
    path: str, raw: bytes, headers: dict[str, str] | None = None, **body: Any
) -> RequestContext:
    hdrs = dict(headers or {})
    size = body.pop("size_bytes", len(raw))
    return RequestContext(
        request=HttpRequest(
            method="POST",
            path=path,
            headers=hdrs,
            content_type=hdrs.get("content-type"),
            body=Body(True, size, None, raw, None, **body),
        ),
        id="req-1",
    )


PAYLOADS = [
    ("nosql", {"$ne": None}),
    ("nosql", {"$where": "sleep(1000)"}),
    ("proto", {"__proto__": {"admin": True}}),
    ("xss", "<script>alert(1)</script>"),
]
LABELS = [
    None,
    "text/plain",
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "text/html",
    "application/vnd.api+json",
    "x/y",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"]
CODINGS = [None, "gzip", "deflate", "x-gzip", "identity", "gzip, identity"]

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


def _code(raw: bytes, coding: str | None) -> bytes:
    if coding is None or coding == "identity":
        return raw
    if "gzip" in coding:
        return gzip.compress(raw)
    return zlib.compress(raw)


@st.composite
def hostile_json(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A JSON text holding a payload, dressed the ways a lenient upstream still reads."""
    _, payload = draw(st.sampled_from(PAYLOADS))
    key = draw(words)
    benign = {draw(words): draw(words) for _ in range(draw(st.integers(0, 3)))}
    shape = draw(st.sampled_from(["plain", "dup-first", "dup-last", "nested", "trailing", "nan"]))
    payload_json = json.dumps(payload)
    if shape == "plain":
        text = json.dumps({**benign, key: payload})
    elif shape == "dup-first":
        text = f'{{"{key}": {payload_json}, "{key}": "ok"}}'
    elif shape == "dup-last":
        text = f'{{"{key}": "ok", "{key}": {payload_json}}}'
    elif shape == "nested":
        text = json.dumps({"outer": [{**benign, key: payload}]})
    elif shape == "trailing":
        text = (
            json.dumps(benign) + draw(st.sampled_from(["", " ", "\n"])) + json.dumps({key: payload})
        )
    else:
        text = f'{{"n": NaN, "i": -Infinity, "{key}": {payload_json}}}'
    raw = text.encode(draw(st.sampled_from(ENCODINGS)))
    coding = draw(st.sampled_from(CODINGS))
    headers = {}
    label = draw(st.sampled_from(LABELS))
    if label is not None:
        headers["content-type"] = label
    if coding is not None:
        headers["content-encoding"] = coding
    return _code(raw, coding), headers


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_json())
def test_a_payload_in_json_is_never_allowed_whatever_its_dress(
    case: tuple[bytes, dict[str, str]],
) -> None:
    raw, headers = case
    d = evaluate(DEFAULT, ctx("/open", raw, headers))
    assert d.action != ALLOW, (raw[:80], headers, d.reason)
    assert "engine.internalError" not in d.rule_ids
    assert set(d.rule_ids) & {
        "vulnerability.nosqlInjection",
        "vulnerability.prototypePollution",
        "vulnerability.xss",
    }, d.rule_ids


@settings(max_examples=200, deadline=None)
@given(
    st.lists(words, min_size=1, max_size=6),
    st.integers(0, 6),
    st.sampled_from(["<script>alert(1)</script>", '{"$ne": null}', '{"$gt": ""}']),
    st.sampled_from(["form", "multipart"]),
)
def test_every_value_of_a_repeated_field_is_inspected(
    values: list[str], at: int, payload: str, kind: str
) -> None:
    values = [*values[:at], payload, *values[at:]]
    pairs = [("q", v) for v in values]
    if kind == "form":
        raw = urlencode(pairs).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
    else:
        raw = (
            b"".join(
                f'--B\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                for k, v in pairs
            )
            + b"--B--\r\n"
        )
        headers = {"content-type": "multipart/form-data; boundary=B"}
    d = evaluate(DEFAULT, ctx("/open", raw, headers))
    assert d.action != ALLOW, (raw, d.reason)
    assert {"vulnerability.xss", "vulnerability.nosqlInjection"} & set(d.rule_ids)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"$ne": 1}',  # the raw bytes look like JSON under a form label
        b"%7B%22%24ne%22%3A1%7D",  # JSON text as the one form key
        b"a=1&f=%7B%22__proto__%22%3A%7B%7D%7D",  # JSON text as a form value
    ],
)
def test_json_text_in_a_form_is_inspected_as_json(raw: bytes) -> None:
    d = evaluate(DEFAULT, ctx("/open", raw, {"content-type": "application/x-www-form-urlencoded"}))
    assert d.action != ALLOW, d.reason


# --- refusals and the switches -----------------------------------------------------------


def test_json_that_does_not_decode_under_a_json_label_is_refused_or_inspected() -> None:
    raw = b'{"a": "<script>alert(1)</script>", '  # cut: no JSON value parses
    d = evaluate(DEFAULT, ctx("/open", raw, {"content-type": "application/json"}))
    assert d.status_code == 400 and "request.body.malformed" in d.rule_ids
    assert "vulnerability.xss" in d.rule_ids  # its text is inspected all the same
    lax = policy("body: {malformed: inspect}")
    d = evaluate(lax, ctx("/open", raw, {"content-type": "application/json"}))
    assert d.rule_ids == ("vulnerability.xss",) and d.status_code == 403
    clean = b'{"a": "hello", '
    assert evaluate(lax, ctx("/open", clean, {"content-type": "application/json"})).allowed


def test_repeated_keys_on_a_contract_read_body_are_refused_by_default() -> None:
    for path in ("/transfer", "/ruled"):
        raw = b'{"to": "bob", "amount": 5, "amount": 5000}'
        d = evaluate(DEFAULT, ctx(path, raw, {"content-type": "application/json"}))
        assert d.status_code == 400 and d.rule_ids[0] == "request.body.duplicateKey", d.rule_ids
        assert "'amount'" in d.rule_hits[0].message
    form = b"to=bob&amount=5&amount=5000"
    d = evaluate(
        DEFAULT, ctx("/transfer", form, {"content-type": "application/x-www-form-urlencoded"})
    )
    assert "request.body.duplicateKey" in d.rule_ids
    # no contract, no rule: every value inspected, nothing to refuse
    assert evaluate(
        DEFAULT, ctx("/open", b'{"a": 1, "a": 2}', {"content-type": "application/json"})
    ).allowed


def test_with_duplicate_keys_allowed_the_contract_reads_the_last_value() -> None:
    lax = policy("body: {duplicateKeys: allow}")
    last_bad = b'{"to": "bob", "amount": 5, "amount": 5000}'
    d = evaluate(lax, ctx("/transfer", last_bad, {"content-type": "application/json"}))
    assert d.rule_ids == ("contract.schemaInvalid",) or "contract" in d.rule_ids[0], d.rule_ids
    last_good = b'{"to": "bob", "amount": 5000, "amount": 5}'
    assert evaluate(lax, ctx("/transfer", last_good, {"content-type": "application/json"})).allowed
    d = evaluate(lax, ctx("/ruled", last_bad, {"content-type": "application/json"}))
    assert d.rule_ids == ("small",)


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"to": "bob", "amount": 5}',
        b'{"to": "bob", "amount": NaN}',
        b'{"to": "bob", "amount": 5} {"amount": 5000}',
        '{"to": "bob", "amount": 5}'.encode("utf-16"),
    ],
)
def test_contract_read_json_that_parsers_read_differently_is_malformed(raw: bytes) -> None:
    d = evaluate(DEFAULT, ctx("/transfer", raw, {"content-type": "application/json"}))
    assert d.status_code == 400 and "request.body.malformed" in d.rule_ids, d.rule_ids
    # the same bytes on a route nothing reads the body of: inspected, allowed when clean
    assert evaluate(DEFAULT, ctx("/open", raw, {"content-type": "application/json"})).allowed


def test_content_codings() -> None:
    clean = b'{"to": "bob", "amount": 5}'
    for coding, raw in (("gzip", gzip.compress(clean)), ("deflate", zlib.compress(clean))):
        headers = {"content-type": "application/json", "content-encoding": coding}
        assert evaluate(DEFAULT, ctx("/transfer", raw, headers)).allowed
        refuse = policy("body: {contentEncoding: refuse}")
        d = evaluate(refuse, ctx("/transfer", raw, headers))
        assert d.status_code == 415 and d.rule_ids == ("request.body.encoding",)
    for coding in ("br", "zstd", "compress", "gzip, gzip, gzip"):
        headers = {"content-type": "application/json", "content-encoding": coding}
        d = evaluate(DEFAULT, ctx("/open", gzip.compress(clean), headers))
        assert d.status_code == 415 and d.rule_ids == ("request.body.encoding",), coding
    bomb = gzip.compress(b"[" + b"0," * 2_000_000 + b"0]")
    d = evaluate(
        DEFAULT,
        ctx("/open", bomb, {"content-encoding": "gzip", "content-type": "application/json"}),
    )
    assert d.status_code == 413 and d.rule_ids == ("limit.body.max",)
    assert "expands past" in d.rule_hits[0].message
    for junk in (
        b"\x1f\x8b\x08\x00junk",
        gzip.compress(clean)[:-6],
        gzip.compress(clean) + b"tail",
    ):
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        d = evaluate(DEFAULT, ctx("/open", junk, headers))
        assert d.status_code == 400 and d.rule_ids == ("request.body.malformed",), junk


def test_a_coded_array_is_measured_after_decoding() -> None:
    raw = gzip.compress(json.dumps(list(range(5000))).encode())
    d = evaluate(
        DEFAULT, ctx("/open", raw, {"content-type": "application/json", "content-encoding": "gzip"})
    )
    assert d.rule_ids == ("limit.array.max",)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(LABELS), st.sampled_from([*CODINGS, "br", "zz"]))
def test_any_bytes_any_label_any_coding_decide_without_crashing(
    raw: bytes, label: str | None, coding: str | None
) -> None:
    headers = {k: v for k, v in (("content-type", label), ("content-encoding", coding)) if v}
    d = evaluate(DEFAULT, ctx("/transfer", raw, headers))
    assert "engine.internalError" not in d.rule_ids
    again = evaluate(DEFAULT, ctx("/transfer", raw, headers))
    assert (d.action, d.rule_ids) == (again.action, again.rule_ids)


# --- partial bodies ----------------------------------------------------------------------


SMALL = policy("limits: {maxBodyBytes: 2048}")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3000),
    st.one_of(st.none(), st.integers(0, 6000)),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", None]),
)
def test_a_cut_body_that_can_exceed_the_limit_is_never_allowed(
    seen: int, declared: int | None, label: str | None
) -> None:
    """Refused (413) unless the bytes seen and a declared length prove it within the limit."""
    raw = b"a=" + b"x" * (seen - 2) if seen > 2 else b"x" * seen
    headers = {"content-type": label} if label else {}
    if declared is not None:
        headers["content-length"] = str(declared)
    size = max(seen, declared or 0)
    d = evaluate(SMALL, ctx("/open", raw, headers, partial=True, size_bytes=size))
    proven_within = declared is not None and seen < declared <= 2048
    if not proven_within:
        assert d.action != ALLOW and d.status_code == 413, (seen, declared, d.reason)
        assert d.rule_ids[0] == "limit.body.max"
    else:
        assert "limit.body.max" not in d.rule_ids
        if label == "application/json":  # cut JSON never parses: malformed, never allowed
            assert d.rule_ids == ("request.body.malformed",)


@pytest.mark.parametrize("size", [2047, 2048])
def test_a_whole_body_at_or_below_the_limit_is_checked_and_allowed(size: int) -> None:
    small = SMALL
    for raw in (b"x" * size, b"a=" + b"x" * (size - 2), b'{"a":"' + b"x" * (size - 8) + b'"}'):
        assert evaluate(small, ctx("/open", raw, {})).allowed
    d = evaluate(small, ctx("/open", b"x" * 2049, {}))
    assert d.status_code == 413


def test_parse_keeps_every_value_for_the_detectors() -> None:
    parsed = b.parse(
        Body(True, 9, None, b"a=1&a=2&b", None), "application/x-www-form-urlencoded", 32, 99
    )
    assert parsed.value == {"a": "1,2", "b": ""} and parsed.inspect == {"a": ["1", "2"], "b": ""}
    assert parsed.duplicates == ("a",)


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"to": "bob", "amount": 5, "Amount": 5000}', "application/json"),
        (b'{"to": "bob", "AMOUNT": 5000, "amount": 5}', "application/json"),
        (b"to=bob&amount=5&Amount=5000", "application/x-www-form-urlencoded"),
    ],
)
def test_keys_equal_but_for_case_are_repeated_keys(raw: bytes, content_type: str) -> None:
    """Case-insensitive binders (ASP.NET's defaults, Jackson's option) read them as one."""
    d = evaluate(DEFAULT, ctx("/transfer", raw, {"content-type": content_type}))
    assert d.status_code == 400 and "request.body.duplicateKey" in d.rule_ids, d.rule_ids
    assert "amount/" in d.rule_hits[0].message.lower()


@pytest.mark.parametrize("label", [None, "text/plain", "application/octet-stream"])
def test_a_json_string_under_any_label_is_inspected(label: str | None) -> None:
    raw = '"<script>alert(1)</script>"'.encode("utf-16")
    headers = {"content-type": label} if label else {}
    d = evaluate(DEFAULT, ctx("/open", raw, headers))
    assert d.rule_ids == ("vulnerability.xss",), d.rule_ids


def test_the_depth_limit_holds_for_json_sent_as_a_form() -> None:
    raw = b"[" * 100 + b"]" * 100
    d = evaluate(DEFAULT, ctx("/open", raw, {"content-type": "application/x-www-form-urlencoded"}))
    assert d.rule_ids == ("limit.json.depth",) and d.status_code == 403


@pytest.mark.parametrize("coding", ["gzip", "deflate", "x-gzip", "gzip, gzip"])
def test_a_coded_body_is_measured_decoded_at_the_exact_limit(coding: str) -> None:
    """The limit applies to the decoded bytes, to the byte: SMALL's 2048 decoded is checked
    and allowed, 2049 is 413, however small the coded form is (it compresses ~100x)."""

    def coded(raw: bytes) -> bytes:
        for layer in reversed([c.strip() for c in coding.split(",")]):
            raw = gzip.compress(raw) if "gzip" in layer else zlib.compress(raw)
        return raw

    headers = {"content-type": "text/plain", "content-encoding": coding}
    at = coded(b"x" * 2048)
    assert len(at) < 200
    assert evaluate(SMALL, ctx("/open", at, headers)).allowed
    d = evaluate(SMALL, ctx("/open", coded(b"x" * 2049), headers))
    assert (d.action, d.status_code, d.rule_ids) == ("BLOCK", 413, ("limit.body.max",))
    # a payload past the limit is never inspected-and-allowed: the same 413 when it hides there
    hidden = coded(b"x" * 2040 + b"<script>alert(1)</script>")
    d = evaluate(SMALL, ctx("/open", hidden, headers))
    assert d.action == "BLOCK" and "limit.body.max" in d.rule_ids
