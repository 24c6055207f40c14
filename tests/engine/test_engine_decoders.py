"""The body decoder registry: one file per format, chosen by media type by the body phase.

A throw-away decoder registered here (``text/x-lines``: ``key: value`` lines) is consulted by
the body phase and the pipeline like the built-in ones: by type, by rank among repeated
Content-Type headers, for a truncated body, and when sniffing bodies under another label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extauthz.context import Body, RequestContext
from extauthz.engine import body as b
from extauthz.engine import decoders, evaluate
from extauthz.engine.body import JSON, MALFORMED, ParsedBody
from extauthz.engine.decoders import Decoder
from extauthz.policy import load_policy_text

POLICY = """
policyVersion: "0.1"
defaults: {mode: enforce}
routes:
  - id: echo
    match: {method: POST, path: /echo}
"""


def _lines(raw: bytes, content_type: str, max_depth: int, max_bytes: int) -> ParsedBody:
    value: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("#"):
            continue
        key, sep, val = line.partition(": ")
        if not sep:
            return ParsedBody(MALFORMED, error=f"not 'key: value': {line[:40]!r}")
        value[key] = val
    return ParsedBody(JSON, value)


LINES = Decoder(
    "lines",
    ("text/x-lines",),
    _lines,
    suffixes=("lines",),
    rank=5,
    sniff=lambda raw: raw.startswith(b"#lines\n"),
    whole_body=True,
)


@pytest.fixture
def lines() -> Iterator[Decoder]:
    decoders.register(LINES)
    try:
        yield LINES
    finally:
        decoders.unregister("lines")


def parse(raw: bytes, content_type: str, partial: bool = False) -> ParsedBody:
    return b.parse(Body(True, len(raw), raw=raw, partial=partial), content_type, 32, 1 << 20)


def test_every_public_module_of_the_package_is_one_registered_decoder() -> None:
    folder = Path(decoders.__file__).parent
    modules = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
    assert modules == sorted(d.name for d in decoders.decoders())
    assert [d.name for d in decoders.decoders()] == ["json", "form", "grpc", "multipart"]  # by rank
    assert [d.name for d in decoders.SNIFFERS] == ["json"]


@pytest.mark.parametrize(
    ("media_type", "name"),
    [
        ("application/json", "json"),
        ("text/json", "json"),
        ("application/vnd.api+json", "json"),
        ("application/problem+json", "json"),
        ("application/x-www-form-urlencoded", "form"),
        ("text/plain", None),
        ("application/json-seq", None),
        ("application/jsonx", None),
        ("", None),
    ],
)
def test_lookup_by_media_type_and_suffix(media_type: str, name: str | None) -> None:
    found = decoders.for_media_type(media_type)
    assert (found.name if found else None) == name


def test_an_extra_decoder_is_consulted_by_the_body_phase_and_the_pipeline(
    lines: Decoder, ctx: Callable[..., RequestContext]
) -> None:
    raw = b"name: x\n__proto__: polluted\n"
    assert parse(raw, "text/x-lines; charset=utf-8") == ParsedBody(
        JSON, {"name": "x", "__proto__": "polluted"}
    )
    assert parse(raw, "application/vnd.acme+lines").kind == JSON  # by its suffix
    policy = load_policy_text(POLICY)
    d = evaluate(policy, ctx("POST", "/echo", raw=raw, content_type="text/x-lines"))
    assert d.rule_ids == ("vulnerability.prototypePollution",)
    d = evaluate(policy, ctx("POST", "/echo", raw=b"no colon", content_type="text/x-lines"))
    assert d.rule_ids == ("request.body.malformed",)
    assert "not 'key: value'" in d.rule_hits[0].message


def test_without_it_the_same_body_is_opaque(ctx: Callable[..., RequestContext]) -> None:
    raw = b"name: x\n__proto__: polluted\n"
    assert decoders.for_media_type("text/x-lines") is None
    assert parse(raw, "text/x-lines").kind == b.OPAQUE
    policy = load_policy_text(POLICY)
    assert evaluate(policy, ctx("POST", "/echo", raw=raw, content_type="text/x-lines")).allowed


def test_repeated_content_types_the_lowest_rank_decodes(lines: Decoder) -> None:
    assert parse(b"a: 1", "text/plain, text/x-lines").value == {"a": "1"}
    assert parse(b"a: 1", "application/x-www-form-urlencoded, text/x-lines").kind == JSON
    assert parse(b'{"a": 1}', "text/x-lines, application/json").value == {"a": 1}


def test_a_whole_body_decoder_blames_the_truncation(lines: Decoder) -> None:
    parsed = parse(b"a: 1\nb", "text/x-lines", partial=True)
    assert parsed.kind == MALFORMED and "truncated by the proxy" in (parsed.error or "")
    # a form is not a whole-body format: its own reason stands
    parsed = parse(b"a=%FF", "application/x-www-form-urlencoded", partial=True)
    assert parsed.kind == MALFORMED and "invalid UTF-8" in (parsed.error or "")


def test_sniffing_tries_each_sniffer_and_never_makes_a_body_malformed(lines: Decoder) -> None:
    parsed = parse(b"#lines\na: 1\n", "text/plain")
    assert (parsed.kind, parsed.value, parsed.sniffed) == (JSON, {"a": "1"}, True)
    assert parse(b"#lines\nnot a line\n", "text/plain").kind == b.OPAQUE
    assert parse(b'{"a": 1}', "").sniffed  # the JSON decoder still sniffs first (rank 0)


def test_register_refuses_a_taken_name_type_or_suffix() -> None:
    def decode(raw: bytes, ct: str, depth: int, size: int) -> ParsedBody:
        return ParsedBody(b.OPAQUE)

    for decoder, message in (
        (Decoder("json", ("application/x-other",), decode), "already registered"),
        (Decoder("other", ("application/json",), decode), "decoded by 'json'"),
        (Decoder("other", (), decode, suffixes=("json",)), "decoded by 'json'"),
        (Decoder("other", ("Text/Other",), decode), "lower-case"),
    ):
        with pytest.raises(ValueError, match=message):
            decoders.register(decoder)
    assert [d.name for d in decoders.decoders()] == ["json", "form", "grpc", "multipart"]
    assert decoders.for_media_type("application/x-other") is None
