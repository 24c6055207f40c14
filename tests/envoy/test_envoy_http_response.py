"""The HTTP-mode answer's identity headers: a claim is written as it is when printable, with
its control characters dropped otherwise (never a header injection)."""

from __future__ import annotations

import pytest

from extauthz.context import Identity
from extauthz.decision import Decision, DecisionMetadata
from extauthz.envoy.http_response import _header_value, decision_to_http

CLAIMS = ["alice", "caf\u00e9 \u2603", "a\r\nx-evil: 1", "tab\there", "\x00nul", "\u2028line", ""]


@pytest.mark.parametrize("claim", CLAIMS)
def test_claim_headers_are_the_printable_characters_of_the_claim(claim: str) -> None:
    decision = Decision("ALLOW", metadata=DecisionMetadata(route_id="r", request_id="id"))
    identity = Identity(authenticated=True, subject=claim, tenant=claim)
    headers = dict(decision_to_http(decision, identity).headers)
    printable = "".join(c for c in claim if c.isprintable())
    assert _header_value(claim) == printable
    if claim:
        assert headers["x-contractshield-subject"] == printable
        assert headers["x-contractshield-tenant"] == printable
        assert "\r" not in printable and "\n" not in printable
    else:  # no value: named for removal instead
        assert "x-contractshield-subject" not in headers
        assert "x-contractshield-subject" in headers["x-envoy-auth-headers-to-remove"]
