"""The multipart/form-data decoder: parts kept, hostile bodies malformed with a reason, limits."""

from __future__ import annotations

import pytest

from extauthz.engine import evaluate
from extauthz.engine.body import MALFORMED, MULTIPART
from extauthz.engine.decoders.multipart import (
    MAX_FILENAME,
    MAX_HEADER_BYTES,
    MAX_PARTS,
    decode,
)
from extauthz.policy import load_policy_text
from tests.engine.conftest import build_ctx

B = "XyZzy"
CT = f"multipart/form-data; boundary={B}"


def part(name: str, value: bytes, filename: str | None = None, extra: str = "") -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        head += f'; filename="{filename}"'
    return f"--{B}\r\n{head}\r\n{extra}\r\n".encode() + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


def test_parts_fields_and_files() -> None:
    raw = body(
        part("a", b"1"),
        part("a", b"2"),
        part("note", "caf\u00e9".encode()),
        part("doc", b"\xff\x00", "r\u00e9sum\u00e9.pdf",
             "Content-Type: application/pdf\r\n"),
    )  # fmt: skip
    parsed = decode(raw, CT, 32, 1 << 20)
    assert parsed.kind == MULTIPART, parsed.error
    assert parsed.value == {
        "a": "1,2",
        "note": "caf\u00e9",
        "doc": {"filename": "r\u00e9sum\u00e9.pdf", "contentType": "application/pdf", "size": 2},
    }
    assert parsed.form_pairs == (("a", "1"), ("a", "2"), ("note", "caf\u00e9"))
    assert [(p.name, p.filename, p.text) for p in parsed.parts][-1] == (
        "doc",
        "r\u00e9sum\u00e9.pdf",
        None,
    )
    assert decode(body(), CT, 32, 1 << 20).kind == MULTIPART  # no parts at all


@pytest.mark.parametrize(
    ("raw", "content_type", "reason"),
    [
        (body(part("a", b"1")), "multipart/form-data", "boundary"),
        (body(part("a", b"1")), "multipart/form-data; boundary=" + "x" * 71, "boundary"),
        (body(part("a", b"1"))[:-6], CT, "closing boundary"),
        (b"preamble\r\n" + body(part("a", b"1")), CT, "invalid multipart"),
        (body(part("a", b"1")).replace(b"form-data; ", b"attachment; "), CT, "form-data"),
        (
            body(part("a", b"1", extra='Content-Disposition: form-data; name="b"\r\n')),
            CT,
            "exactly one",
        ),
        (body(*[part("a", b"1")] * (MAX_PARTS + 1)), CT, f"more than {MAX_PARTS} parts"),
        (body(part("a", b"1", extra="X-A: " + "a" * MAX_HEADER_BYTES + "\r\n")), CT, "header"),
        (body(part("a", b"1", extra="".join(f"X-{i}: v\r\n" for i in range(20)))), CT, "header"),
        (body(part("f", b"1", "a" * (MAX_FILENAME + 1))), CT, "filename is longer"),
        (body(part("f", b"1", "a\tb.txt")), CT, "control character"),
        (body(part("a", b"1", extra="Content-Type: a\r\nContent-Type: b\r\n")), CT, "several"),
    ],
)
def test_hostile_bodies_are_malformed_with_a_reason(
    raw: bytes, content_type: str, reason: str
) -> None:
    parsed = decode(raw, content_type, 32, 1 << 22)
    assert parsed.kind == MALFORMED
    assert reason in (parsed.error or ""), parsed.error


def test_a_large_body_of_boundary_lookalikes_is_linear() -> None:
    # "\r\n--XyZz" repeated: every position starts a near-match of the delimiter
    raw = body(part("f", b"\r\n--XyZz" * 100_000, "a.bin"))
    parsed = decode(raw, CT, 32, 1 << 24)
    assert parsed.kind == MULTIPART and len(parsed.parts[0].data) == 800_000


POLICY = """
policyVersion: "0.1"
defaults:
  vulnerabilityChecks: {xss: true, pathTraversal: true}
  limits: {maxMultipartParts: 3, maxMultipartPartBytes: 40}
routes:
  - {id: up, match: {method: POST, path: /up}}
"""


def test_the_checks_read_text_parts_and_filenames_and_the_limits_hold() -> None:
    policy = load_policy_text(POLICY)

    def ids(raw: bytes, **kw: object) -> list[str]:
        d = evaluate(policy, build_ctx("POST", "/up", raw=raw, content_type=CT, **kw))  # type: ignore[arg-type]
        return [h.id for h in d.rule_hits]

    assert ids(body(part("a", b"hello"))) == []
    assert ids(body(part("a", b"<script>alert(1)</script>"))) == ["vulnerability.xss"]
    assert ids(body(part("f", b"x", "../../etc/passwd"))) == ["vulnerability.pathTraversal"]
    assert ids(body(*[part("a", b"1")] * 4)) == ["limit.multipart.parts"]
    assert ids(body(part("f", b"x" * 41, "a.bin"))) == ["limit.multipart.partBytes"]
    # a truncated body is malformed, and says the proxy cut it
    d = evaluate(
        policy, build_ctx("POST", "/up", raw=body(part("a", b"1"))[:-8], content_type=CT,
                          partial=True, size_bytes=500)
    )  # fmt: skip
    assert "request.body.malformed" in [h.id for h in d.rule_hits]
    assert "truncated by the proxy" in d.reason or any(
        "truncated" in h.message for h in d.rule_hits
    )
